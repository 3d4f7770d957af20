/**
 * Jobs: the history store, searched on the server (filters, sort, keyset cursor), so it stays
 * fast with any number of jobs. Live events re-read the page on screen.
 */
import { useEffect, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router";

import { useJobs, useJobTypes, useQueues } from "../../api/queries";
import { JOB_STATUSES, type Job, type JobSearch, type SortField } from "../../api/types";
import { usePermissions } from "../../auth/AuthProvider";
import { Pager } from "../../components/Pager/Pager";
import { QueryState } from "../../components/QueryState/QueryState";
import { StatusBadge } from "../../components/StatusBadge/StatusBadge";
import { formatDuration, formatTime, fromLocalInput, shortId, toLocalInput } from "../../format";
import { useLive } from "../../live/LiveProvider";
import { links } from "../../urls";
import { attemptView } from "../JobDetail/attempts";
import { formatArgs, PAGE_SIZES, paramsFromSearch, parseArgs, searchFromParams } from "./search";

export function JobsPage() {
  const [params, setParams] = useSearchParams();
  const search = searchFromParams(params);
  // Cursors of the pages before this one, so "Previous" can go back along a keyset cursor.
  const [cursors, setCursors] = useState<(string | undefined)[]>([]);
  const [cursor, setCursor] = useState<string | undefined>(undefined);
  const jobs = useJobs({ ...search, cursor });
  useWatched(jobs.data?.items);

  const apply = (next: JobSearch) => {
    setCursors([]);
    setCursor(undefined);
    setParams(paramsFromSearch(next));
  };
  const sortBy = (field: SortField) => apply({
    ...search, sort: field, order: search.sort === field && search.order === "desc" ? "asc" : "desc",
  });

  return (
    <section aria-labelledby="jobs-title">
      <h1 id="jobs-title">Jobs</h1>
      <Filters key={params.toString()} search={search} onApply={apply} />
      <QueryState query={jobs} label="jobs"
                  isEmpty={(page) => page.items.length === 0 && cursors.length === 0 && !page.next_cursor}
                  empty="No job matches these filters.">
        {(page) => (
          <>
            <JobTable jobs={page.items} search={search} onSort={sortBy} stale={jobs.isPlaceholderData} />
            <Pager label="Jobs" page={cursors.length + 1} busy={jobs.isFetching && jobs.isPlaceholderData}
                   hasPrevious={cursors.length > 0} hasNext={page.next_cursor != null}
                   onPrevious={() => {
                     setCursor(cursors[cursors.length - 1]);
                     setCursors(cursors.slice(0, -1));
                   }}
                   onNext={() => {
                     setCursors([...cursors, cursor]);
                     setCursor(page.next_cursor ?? undefined);
                   }} />
          </>
        )}
      </QueryState>
    </section>
  );
}

/** Follow the jobs on screen (a producer's socket receives only the events of jobs it names). */
function useWatched(items: Job[] | undefined) {
  const { watch } = useLive();
  const ids = (items ?? []).map((j) => j.id).join(" ");
  useEffect(() => {
    const stops = ids ? ids.split(" ").map(watch) : [];
    return () => stops.forEach((stop) => stop());
  }, [ids, watch]);
}

function Filters({ search, onApply }: { search: JobSearch; onApply: (s: JobSearch) => void }) {
  const { readsAll } = usePermissions();
  const queues = useQueues();
  const types = useJobTypes();
  const [draft, setDraft] = useState(search);
  const set = (patch: Partial<JobSearch>) => setDraft({ ...draft, ...patch });
  const toggleStatus = (s: (typeof JOB_STATUSES)[number], on: boolean) => {
    const next = new Set(draft.status ?? []);
    if (on) next.add(s);
    else next.delete(s);
    set({ status: next.size > 0 ? JOB_STATUSES.filter((x) => next.has(x)) : undefined });
  };
  const [argsText, setArgsText] = useState(formatArgs(search.arg));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    onApply({ ...draft, text: draft.text?.trim() || undefined, arg: parseArgs(argsText) });
  };
  const queueNames = readsAll ? (queues.data ?? []).map((q) => q.name) : [];
  return (
    <form className="card filters" onSubmit={submit} aria-label="Job filters">
      <fieldset className="filters__statuses">
        <legend>Status</legend>
        {JOB_STATUSES.map((s) => (
          <label key={s} className="check">
            <input type="checkbox" name="status" value={s} checked={draft.status?.includes(s) ?? false}
                   onChange={(e) => toggleStatus(s, e.target.checked)} />
            {s}
          </label>
        ))}
      </fieldset>
      <div className="filters__row">
        <label>Queue
          <select value={draft.queue ?? ""} onChange={(e) => set({ queue: e.target.value || undefined })}>
            <option value="">any</option>
            {[...new Set([...queueNames, ...(draft.queue ? [draft.queue] : [])])].map((q) => <option key={q}>{q}</option>)}
          </select>
        </label>
        <label>Type
          <select value={draft.type ?? ""} onChange={(e) => set({ type: e.target.value || undefined })}>
            <option value="">any</option>
            {(types.data ?? []).map((t) => <option key={t.name}>{t.name}</option>)}
          </select>
        </label>
        <label>Arguments
          <input type="search" value={argsText} placeholder="order_id=42" maxLength={400}
                 aria-describedby="args-hint" onChange={(e) => setArgsText(e.target.value)} />
        </label>
        <label>Job id starts with
          <input type="search" value={draft.id_prefix ?? ""} maxLength={64}
                 onChange={(e) => set({ id_prefix: e.target.value.trim() || undefined })} />
        </label>
        <label>Error contains
          <input type="search" value={draft.text ?? ""} maxLength={200}
                 onChange={(e) => set({ text: e.target.value || undefined })} />
        </label>
        <label>From
          <input type="datetime-local" step={1} value={toLocalInput(draft.since_ms)}
                 onChange={(e) => set({ since_ms: fromLocalInput(e.target.value) })} />
        </label>
        <label>Until
          <input type="datetime-local" step={1} value={toLocalInput(draft.until_ms)}
                 onChange={(e) => set({ until_ms: fromLocalInput(e.target.value) })} />
        </label>
        <label>Sort by
          <select value={draft.sort} onChange={(e) => set({ sort: e.target.value as SortField })}>
            <option value="submitted_ms">submitted</option>
            <option value="updated_ms">last change</option>
            <option value="finished_ms">finished</option>
          </select>
        </label>
        <label>Order
          <select value={draft.order} onChange={(e) => set({ order: e.target.value as "asc" | "desc" })}>
            <option value="desc">newest first</option>
            <option value="asc">oldest first</option>
          </select>
        </label>
        <label>Per page
          <select value={draft.limit} onChange={(e) => set({ limit: Number(e.target.value) })}>
            {PAGE_SIZES.map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </label>
      </div>
      <div className="filters__actions">
        <button type="submit" className="button--primary">Apply filters</button>
        <button type="button" onClick={() => onApply({})}>Clear</button>
      </div>
      <p className="muted small" id="args-hint">
        The time range applies to the field sorted by. Arguments: top-level key=value pairs separated
        by spaces (42 is a number, "42" a string); each page looks through 20,000 jobs that pass the
        other filters, so narrow those to search further back.
      </p>
    </form>
  );
}

function SortHeader({ field, label, search, onSort }: {
  field: SortField; label: string; search: JobSearch; onSort: (f: SortField) => void;
}) {
  const active = search.sort === field;
  const direction = search.order === "asc" ? "ascending" : "descending";
  return (
    <th scope="col" aria-sort={active ? direction : "none"}>
      <button type="button" className="sort" onClick={() => onSort(field)}>
        {label} {active ? (search.order === "asc" ? "▲" : "▼") : ""}
        <span className="visually-hidden">{active ? `, sorted ${direction}` : ", sort"}</span>
      </button>
    </th>
  );
}

function JobTable({ jobs, search, onSort, stale }: {
  jobs: Job[]; search: JobSearch; onSort: (f: SortField) => void; stale: boolean;
}) {
  return (
    <div className="table-wrap">
      {/* aria-busy: the rows are the previous search's until the new page arrives. */}
      <table className="table" data-testid="jobs-table" aria-busy={stale}>
        <caption className="visually-hidden">Jobs</caption>
        <thead>
          <tr>
            <th scope="col">Job</th><th scope="col">Type</th><th scope="col">Queue</th>
            <th scope="col">Status</th><th scope="col" className="num">Attempt</th>
            <SortHeader field="submitted_ms" label="Submitted" search={search} onSort={onSort} />
            <SortHeader field="finished_ms" label="Finished" search={search} onSort={onSort} />
            <th scope="col">Took</th><th scope="col">Last error</th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((j) => (
            <tr key={j.id} data-job={j.id} data-status={j.status} data-type={j.type}
                data-submitted={j.created_ms ?? ""}>
              <th scope="row"><Link to={links.job(j.id)} title={j.id}>{shortId(j.id)}</Link></th>
              <td>{j.type}</td>
              <td>{j.queue}</td>
              <td><StatusBadge status={j.status} /></td>
              <td className="num">{attemptView(j).text}</td>
              <td>{formatTime(j.created_ms)}</td>
              <td>{formatTime(j.finished_ms)}</td>
              <td>{j.started_ms && j.finished_ms ? formatDuration(j.finished_ms - j.started_ms) : "–"}</td>
              <td className="error-cell" title={j.error ?? undefined}>{j.error ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
