/**
 * "Retry all N matching" and "Purge all N matching": each asks once more, then starts a run on
 * the server and shows its progress until it ends.
 */
import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";

import { useTriage, type TriageAction } from "../../api/mutations";
import { useTriageRun } from "../../api/queries";
import { queryKeys } from "../../api/queryKeys";
import type { DeadFilter, TriageRun } from "../../api/types";
import { ConfirmButton } from "../../components/ConfirmButton/ConfirmButton";
import type { NoticeValue } from "../../components/Notice/Notice";
import { describeError } from "../../components/QueryState/QueryState";
import { formatCount } from "../../format";

type Props = {
  queue: string;
  filter: DeadFilter;
  matched: number;
  filtered: boolean;
  busy: boolean;
  onNotice: (n: NoticeValue) => void;
};

export function TriageControls({ queue, filter, matched, filtered, busy, onNotice }: Props) {
  const triage = useTriage();
  const [runId, setRunId] = useState<string | null>(null);
  const run = useTriageRun(runId);
  const running = triage.isPending || run.data?.state === "running";
  const what = filtered ? `all ${formatCount(matched)} matching` : `all ${formatCount(matched)}`;

  const start = (action: TriageAction["action"]) => triage.mutate({ queue, action, filter }, {
    onSuccess: (r) => { onNotice(null); setRunId(r.id); },
    onError: (e) => onNotice({ kind: "error", text: describeError(e) }),
  });
  return (
    <div className="actions" role="group" aria-label="Dead-letter actions">
      <ConfirmButton label={`Retry ${what}`} confirmLabel={`Confirm retry of ${formatCount(matched)}`}
                     disabled={matched === 0 || running || busy} onConfirm={() => start("retry")} />
      <ConfirmButton label={`Purge ${what}`} confirmLabel={`Confirm purge of ${formatCount(matched)}`} danger
                     disabled={matched === 0 || running || busy} onConfirm={() => start("purge")} />
      {run.data && <RunProgress run={run.data} onNotice={onNotice} />}
      {run.error && <span className="error-text">{describeError(run.error)}</span>}
    </div>
  );
}

function RunProgress({ run, onNotice }: { run: TriageRun; onNotice: (n: NoticeValue) => void }) {
  const queryClient = useQueryClient();
  const percent = run.matched === 0 ? 100 : Math.round((run.done / run.matched) * 100);
  const verb = run.action === "retry" ? "Requeued" : "Purged";
  useEffect(() => {
    if (run.state === "running") return;
    void queryClient.invalidateQueries({ queryKey: queryKeys.dlqOf(run.queue) });
    void queryClient.invalidateQueries({ queryKey: queryKeys.queues });
    onNotice(run.state === "done"
      ? { kind: "ok", text: `${verb} ${formatCount(run.changed)} of ${formatCount(run.matched)} matching jobs of ${run.queue}.` }
      : { kind: "error", text: `Stopped after ${formatCount(run.done)} jobs: ${run.error ?? "unknown error"}` });
  }, [run.state, run.queue, run.changed, run.matched, run.done, run.error, verb, queryClient, onNotice]);
  return (
    <div className="progress-row triage-progress" data-testid="triage-progress" data-state={run.state}>
      <div className="progress" role="progressbar" aria-label={`${run.action} progress`} aria-valuemin={0}
           aria-valuemax={100} aria-valuenow={percent}>
        <div className="progress__bar" style={{ width: `${percent}%` }} />
      </div>
      <span>{formatCount(run.done)} of {formatCount(run.matched)} {run.state === "running" ? "…" : "done"}</span>
    </div>
  );
}
