/**
 * Dead letters: one queue's dead-letter queue, newest first; select jobs one by one or by a
 * filter over the page, then retry or purge them, or all of the queue's.
 */
import { useMemo, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";

import { useDlqAction, type DlqAction } from "../../api/mutations";
import { useDeadLetters, useQueues } from "../../api/queries";
import type { Job, Queue } from "../../api/types";
import { usePermissions } from "../../auth/AuthProvider";
import { ConfirmButton } from "../../components/ConfirmButton/ConfirmButton";
import { Notice, type NoticeValue } from "../../components/Notice/Notice";
import { describeError, QueryState } from "../../components/QueryState/QueryState";
import { Pager } from "../../components/Pager/Pager";
import { formatCount, formatTime, shortId } from "../../format";
import { links } from "../../urls";

const PAGE = 50;

export function DeadLettersPage() {
  const { queue: chosen } = useParams();
  const queues = useQueues();
  return (
    <section aria-labelledby="dlq-title">
      <h1 id="dlq-title">Dead letters</h1>
      <QueryState query={queues} label="queues" isEmpty={(q) => q.length === 0} empty="No queues yet.">
        {(data) => {
          const queue = chosen ?? data.find((q) => q.dead > 0)?.name ?? data[0]?.name ?? "";
          return (
            <>
              <QueuePicker queues={data} current={queue} />
              <DeadJobs key={queue} queue={queue} total={data.find((q) => q.name === queue)?.dead ?? 0} />
            </>
          );
        }}
      </QueryState>
    </section>
  );
}

function QueuePicker({ queues, current }: { queues: Queue[]; current: string }) {
  const navigate = useNavigate();
  return (
    <div className="picker">
      <label>Queue
        <select value={current} onChange={(e) => navigate(links.deadLetters(e.target.value))}>
          {queues.map((q) => <option key={q.name} value={q.name}>{q.name} ({formatCount(q.dead)} dead)</option>)}
        </select>
      </label>
    </div>
  );
}

function DeadJobs({ queue, total }: { queue: string; total: number }) {
  const [offset, setOffset] = useState(0);
  const page = useDeadLetters(queue, offset, PAGE);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [type, setType] = useState("");
  const [text, setText] = useState("");
  const [notice, setNotice] = useState<NoticeValue>(null);
  const { administers } = usePermissions();
  const action = useDlqAction();

  const items = useMemo(() => page.data?.items ?? [], [page.data]);
  const shown = items.filter((j) => (!type || j.type === type)
    && (!text || (j.error ?? "").toLowerCase().includes(text.toLowerCase())));
  const types = [...new Set(items.map((j) => j.type))].sort();
  const chosen = [...selected].filter((id) => items.some((j) => j.id === id));

  const run = (kind: DlqAction["action"], ids: string[] | "all") => action.mutate({ queue, action: kind, ids }, {
    onSuccess: (r) => {
      setSelected(new Set());
      setNotice({ kind: "ok", text: `${kind === "retry" ? "Requeued" : "Purged"} ${r.count} job${r.count === 1 ? "" : "s"} of ${r.queue}.` });
    },
    onError: (e) => setNotice({ kind: "error", text: describeError(e) }),
  });
  const toggle = (id: string, on: boolean) => {
    const next = new Set(selected);
    if (on) next.add(id);
    else next.delete(id);
    setSelected(next);
  };

  return (
    <div>
      <p data-testid="dlq-total"><strong>{formatCount(page.data?.total ?? total)}</strong> dead jobs in <strong>{queue}</strong>.</p>
      <Notice notice={notice} />
      <div className="card filters filters__row" role="group" aria-label="Filter dead jobs">
        <label>Type
          <select value={type} onChange={(e) => setType(e.target.value)}>
            <option value="">any</option>
            {types.map((t) => <option key={t}>{t}</option>)}
          </select>
        </label>
        <label>Error contains
          <input type="search" value={text} onChange={(e) => setText(e.target.value)} />
        </label>
        <button type="button" onClick={() => setSelected(new Set(shown.map((j) => j.id)))} disabled={shown.length === 0}>
          Select {formatCount(shown.length)} shown
        </button>
        <button type="button" onClick={() => setSelected(new Set())} disabled={chosen.length === 0}>Clear selection</button>
      </div>
      {administers && (
        <div className="actions" role="group" aria-label="Dead-letter actions">
          <button type="button" className="button--primary" disabled={chosen.length === 0 || action.isPending}
                  onClick={() => run("retry", chosen)}>Retry selected ({chosen.length})</button>
          <ConfirmButton label={`Purge selected (${chosen.length})`} confirmLabel={`Confirm purge of ${chosen.length}`}
                         danger disabled={chosen.length === 0 || action.isPending} onConfirm={() => run("purge", chosen)} />
          <ConfirmButton label="Retry all" confirmLabel={`Confirm retry of all ${formatCount(total)}`}
                         disabled={total === 0 || action.isPending} onConfirm={() => run("retry", "all")} />
          <ConfirmButton label="Purge all" confirmLabel={`Confirm purge of all ${formatCount(total)}`} danger
                         disabled={total === 0 || action.isPending} onConfirm={() => run("purge", "all")} />
        </div>
      )}
      <QueryState query={page} label="dead jobs" isEmpty={(p) => p.items.length === 0 && offset === 0}
                  empty={`The dead-letter queue of ${queue} is empty.`}>
        {(data) => (
          <>
            <DeadTable jobs={shown} selected={selected} onToggle={toggle} selectable={administers} />
            <Pager label="Dead jobs" page={offset / PAGE + 1} hasPrevious={offset > 0}
                   hasNext={offset + PAGE < data.total} busy={page.isFetching && page.isPlaceholderData}
                   onPrevious={() => setOffset(Math.max(0, offset - PAGE))} onNext={() => setOffset(offset + PAGE)} />
          </>
        )}
      </QueryState>
    </div>
  );
}

function DeadTable({ jobs, selected, onToggle, selectable }: {
  jobs: Job[]; selected: Set<string>; onToggle: (id: string, on: boolean) => void; selectable: boolean;
}) {
  return (
    <div className="table-wrap">
      <table className="table" data-testid="dlq-table">
        <caption className="visually-hidden">Dead jobs</caption>
        <thead>
          <tr>
            {selectable && <th scope="col"><span className="visually-hidden">Select</span></th>}
            <th scope="col">Job</th><th scope="col">Type</th><th scope="col" className="num">Attempts</th>
            <th scope="col">Died</th><th scope="col">Error</th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((j) => (
            <tr key={j.id} data-job={j.id}>
              {selectable && (
                <td>
                  <input type="checkbox" checked={selected.has(j.id)} aria-label={`Select job ${j.id}`}
                         onChange={(e) => onToggle(j.id, e.target.checked)} />
                </td>
              )}
              <th scope="row"><Link to={links.job(j.id)} title={j.id}>{shortId(j.id)}</Link></th>
              <td>{j.type}</td>
              <td className="num">{j.attempt}</td>
              <td>{formatTime(j.finished_ms)}</td>
              <td className="error-cell" title={j.error ?? undefined}>{j.error ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {jobs.length === 0 && <p className="state state--empty">No dead job on this page matches the filter.</p>}
    </div>
  );
}
