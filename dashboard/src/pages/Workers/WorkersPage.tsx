/**
 * Workers: who is alive (from heartbeats), what each runs now, processed and failed counts,
 * uptime. Job events re-read the list at once; heartbeats are not events, so their ages are
 * also re-read every few seconds.
 */
import { useState } from "react";
import { Link } from "react-router";

import { useQuietWorker } from "../../api/mutations";
import { useWorkers } from "../../api/queries";
import type { CurrentJob, Worker } from "../../api/types";
import { usePermissions } from "../../auth/AuthProvider";
import { Ago, useNow } from "../../components/Ago/Ago";
import { ConfirmButton } from "../../components/ConfirmButton/ConfirmButton";
import { Notice, type NoticeValue } from "../../components/Notice/Notice";
import { describeError, QueryState } from "../../components/QueryState/QueryState";
import { StatusBadge } from "../../components/StatusBadge/StatusBadge";
import { formatCount, formatDuration, shortId } from "../../format";
import { links } from "../../urls";

export function WorkersPage() {
  const workers = useWorkers();
  const [notice, setNotice] = useState<NoticeValue>(null);
  return (
    <section aria-labelledby="workers-title">
      <h1 id="workers-title">Workers</h1>
      <Notice notice={notice} />
      <QueryState query={workers} label="workers" isEmpty={(w) => w.length === 0}
                  empty="No worker has sent a heartbeat: start one with `conveyor worker`.">
        {(data) => <WorkerTable workers={[...data].sort((a, b) => Number(b.alive) - Number(a.alive))} onNotice={setNotice} />}
      </QueryState>
    </section>
  );
}

/** Heartbeats carry `current` as free-form objects; keep the ones that name a job. */
function currentJobs(worker: Worker): CurrentJob[] {
  return worker.current.filter((c): c is CurrentJob => typeof c.id === "string");
}

function WorkerTable({ workers, onNotice }: { workers: Worker[]; onNotice: (n: NoticeValue) => void }) {
  const now = useNow();
  const { administers } = usePermissions();
  return (
    <div className="table-wrap">
      <table className="table" data-testid="workers-table">
        <caption className="visually-hidden">Workers</caption>
        <thead>
          <tr>
            <th scope="col">Worker</th><th scope="col">State</th><th scope="col">Queues</th>
            <th scope="col">Last heartbeat</th><th scope="col">Uptime</th>
            <th scope="col" className="num">Running</th><th scope="col" className="num">Processed</th>
            <th scope="col" className="num">Failed</th><th scope="col">Current jobs</th>
            {administers && <th scope="col"><span className="visually-hidden">Actions</span></th>}
          </tr>
        </thead>
        <tbody>
          {workers.map((w) => {
            const current = currentJobs(w);
            return (
              <tr key={w.id} data-worker={w.id} data-alive={w.alive}>
                <th scope="row">{w.id}<div className="muted small">{w.host} pid {w.pid}</div></th>
                <td data-testid="worker-state">
                  <StatusBadge status={w.alive ? "alive" : "silent"} />
                  {w.quiet && <> <StatusBadge status="quiet" /></>}
                </td>
                <td>{w.queues.join(", ")}</td>
                <td><Ago ms={w.beat_ms} /></td>
                <td>{w.started_ms ? formatDuration(now - w.started_ms) : "–"}</td>
                <td className="num" data-testid="in-use">{current.length} / {w.concurrency}</td>
                <td className="num" data-testid="processed">{formatCount(w.processed)}</td>
                <td className="num">{formatCount(w.failed)}</td>
                <td>
                  {current.length === 0 ? <span className="muted">idle</span> : (
                    <ul className="inline-list">
                      {current.slice(0, 10).map((c) => (
                        <li key={c.id} data-job={c.id}>
                          <Link to={links.job(c.id)} title={c.id}>{shortId(c.id)}</Link> {c.type}
                          {c.started ? <span className="muted"> for {formatDuration(now - c.started * 1000)}</span> : null}
                        </li>
                      ))}
                      {current.length > 10 && <li className="muted">and {current.length - 10} more</li>}
                    </ul>
                  )}
                </td>
                {administers && <td><QuietControl worker={w} onNotice={onNotice} /></td>}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** Quiet (claim nothing new, finish the running jobs) or resume, asked once more first. */
function QuietControl({ worker, onNotice }: { worker: Worker; onNotice: (n: NoticeValue) => void }) {
  const action = useQuietWorker();
  if (!worker.alive) return null;
  const run = (quiet: boolean) => action.mutate({ id: worker.id, quiet }, {
    onSuccess: () => onNotice({ kind: "ok", text: quiet
      ? `Worker ${worker.id} is quiet: it finishes its jobs and takes no new one.`
      : `Worker ${worker.id} takes jobs again.` }),
    onError: (e) => onNotice({ kind: "error", text: describeError(e) }),
  });
  return worker.quiet
    ? <button type="button" disabled={action.isPending} onClick={() => run(false)}>Resume</button>
    : <ConfirmButton label="Quiet" confirmLabel={`Confirm quiet of ${shortId(worker.id)}`}
                     disabled={action.isPending} onConfirm={() => run(true)} />;
}
