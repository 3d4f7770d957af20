/**
 * Dead letters: one queue's dead-letter queue, filtered on the server (type, error text, time
 * of death) with every match reachable page by page; retry or purge the selected jobs, or all
 * N that match, with a confirmation and the run's progress.
 */
import { useEffect, useMemo, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";

import { useDlqAction, type DlqAction } from "../../api/mutations";
import { useDeadMatches, useJobTypes, useQueues } from "../../api/queries";
import type { DeadFilter, Job, Queue } from "../../api/types";
import { usePermissions } from "../../auth/AuthProvider";
import { ConfirmButton } from "../../components/ConfirmButton/ConfirmButton";
import { Notice, type NoticeValue } from "../../components/Notice/Notice";
import { Pager } from "../../components/Pager/Pager";
import { describeError, QueryState } from "../../components/QueryState/QueryState";
import { formatCount, formatTime, fromLocalInput, shortId } from "../../format";
import { links } from "../../urls";
import { TriageControls } from "./TriageControls";

const PAGE = 50;
/** Typing settles this long before the server is asked. */
const DEBOUNCE_MS = 300;

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
              <DeadJobs key={queue} queue={queue} />
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

type FilterInputs = { type: string; text: string; since: string; until: string };

function toFilter(f: FilterInputs): DeadFilter {
  const out: DeadFilter = {};
  if (f.type) out.type = f.type;
  if (f.text.trim()) out.text = f.text.trim();
  const since = fromLocalInput(f.since);
  const until = fromLocalInput(f.until);
  if (since !== undefined) out.since_ms = since;
  if (until !== undefined) out.until_ms = until;
  return out;
}

function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

function DeadJobs({ queue }: { queue: string }) {
  const [inputs, setInputs] = useState<FilterInputs>({ type: "", text: "", since: "", until: "" });
  const filter = useDebounced(useMemo(() => toFilter(inputs), [inputs]), DEBOUNCE_MS);
  const [offset, setOffset] = useState(0);
  useEffect(() => setOffset(0), [filter]);
  const page = useDeadMatches(queue, filter, offset, PAGE);
  const [notice, setNotice] = useState<NoticeValue>(null);
  const { administers } = usePermissions();
  const matched = page.data?.matched ?? 0;
  // Retries and purges shrink the matches: stay on the last page that still has some.
  const lastOffset = Math.max(0, Math.ceil(matched / PAGE) - 1) * PAGE;
  useEffect(() => {
    if (page.data && !page.isPlaceholderData && offset > lastOffset) setOffset(lastOffset);
  }, [page.data, page.isPlaceholderData, offset, lastOffset]);
  const filtered = Object.keys(filter).length > 0;

  return (
    <div>
      <p data-testid="dlq-total">
        <strong>{formatCount(page.data?.total)}</strong> dead jobs in <strong>{queue}</strong>
        {filtered && <>; <strong data-testid="dlq-matched">{formatCount(page.data?.matched)}</strong> match the filter</>}.
      </p>
      <Notice notice={notice} />
      <Filters inputs={inputs} onChange={setInputs} />
      {administers && (
        <TriageControls queue={queue} filter={filter} matched={matched} filtered={filtered}
                        busy={page.isFetching} onNotice={setNotice} />
      )}
      <QueryState query={page} label="dead jobs" isEmpty={(p) => p.total === 0}
                  empty={`The dead-letter queue of ${queue} is empty.`}>
        {(data) => (
          <>
            <Selection queue={queue} jobs={data.items} selectable={administers} onNotice={setNotice} />
            <Pager label="Dead jobs" page={offset / PAGE + 1} hasPrevious={offset > 0}
                   hasNext={offset + PAGE < data.matched} busy={page.isFetching && page.isPlaceholderData}
                   onPrevious={() => setOffset(Math.max(0, offset - PAGE))} onNext={() => setOffset(offset + PAGE)} />
            <p className="muted small" data-testid="dlq-pages">
              Page {offset / PAGE + 1} of {Math.max(1, Math.ceil(data.matched / PAGE))}
            </p>
          </>
        )}
      </QueryState>
    </div>
  );
}

function Filters({ inputs, onChange }: { inputs: FilterInputs; onChange: (f: FilterInputs) => void }) {
  const types = useJobTypes();
  const set = (name: keyof FilterInputs) => (e: { target: { value: string } }) =>
    onChange({ ...inputs, [name]: e.target.value });
  return (
    <div className="card filters filters__row" role="group" aria-label="Filter dead jobs">
      <label>Type
        <select value={inputs.type} onChange={set("type")}>
          <option value="">any</option>
          {(types.data ?? []).map((t) => <option key={t.name}>{t.name}</option>)}
        </select>
      </label>
      <label>Error contains
        <input type="search" value={inputs.text} onChange={set("text")} />
      </label>
      <label>Died after
        <input type="datetime-local" step={1} value={inputs.since} onChange={set("since")} />
      </label>
      <label>Died before
        <input type="datetime-local" step={1} value={inputs.until} onChange={set("until")} />
      </label>
    </div>
  );
}

/** The jobs on this page, with retry or purge of those ticked. */
function Selection({ queue, jobs, selectable, onNotice }: {
  queue: string; jobs: Job[]; selectable: boolean; onNotice: (n: NoticeValue) => void;
}) {
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const action = useDlqAction();
  const chosen = [...selected].filter((id) => jobs.some((j) => j.id === id));
  const run = (kind: DlqAction["action"]) => action.mutate({ queue, action: kind, ids: chosen }, {
    onSuccess: (r) => {
      setSelected(new Set());
      onNotice({ kind: "ok", text: `${kind === "retry" ? "Requeued" : "Purged"} ${r.count} job${r.count === 1 ? "" : "s"} of ${r.queue}.` });
    },
    onError: (e) => onNotice({ kind: "error", text: describeError(e) }),
  });
  const toggle = (id: string, on: boolean) => {
    const next = new Set(selected);
    if (on) next.add(id);
    else next.delete(id);
    setSelected(next);
  };
  return (
    <>
      {selectable && (
        <div className="actions" role="group" aria-label="Selected dead jobs">
          <button type="button" onClick={() => setSelected(new Set(jobs.map((j) => j.id)))} disabled={jobs.length === 0}>
            Select {formatCount(jobs.length)} on this page
          </button>
          <button type="button" onClick={() => setSelected(new Set())} disabled={chosen.length === 0}>Clear selection</button>
          <button type="button" className="button--primary" disabled={chosen.length === 0 || action.isPending}
                  onClick={() => run("retry")}>Retry selected ({chosen.length})</button>
          <ConfirmButton label={`Purge selected (${chosen.length})`} confirmLabel={`Confirm purge of ${chosen.length}`}
                         danger disabled={chosen.length === 0 || action.isPending} onConfirm={() => run("purge")} />
        </div>
      )}
      <DeadTable jobs={jobs} selected={selected} onToggle={toggle} selectable={selectable} />
    </>
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
      {jobs.length === 0 && <p className="state state--empty">No dead job matches the filter.</p>}
    </div>
  );
}
