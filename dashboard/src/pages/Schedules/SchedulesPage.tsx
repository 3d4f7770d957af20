/**
 * Schedules: every cron schedule with its next five fire times and the outcome of the job it
 * submitted last (pause, resume, run now, delete), and the delayed jobs by due time (run now,
 * cancel).
 */
import { useState } from "react";
import { Link } from "react-router";

import { useCancelJob, useRunDelayed, useScheduleAction, type ScheduleAction } from "../../api/mutations";
import { useDelayed, useSchedules } from "../../api/queries";
import type { Job, Schedule } from "../../api/types";
import { usePermissions } from "../../auth/AuthProvider";
import { ConfirmButton } from "../../components/ConfirmButton/ConfirmButton";
import { Notice, type NoticeValue } from "../../components/Notice/Notice";
import { describeError, QueryState } from "../../components/QueryState/QueryState";
import { StatusBadge } from "../../components/StatusBadge/StatusBadge";
import { formatCount, formatTime, shortId } from "../../format";
import { links } from "../../urls";

const DELAYED_SHOWN = 100;
const DONE: Record<ScheduleAction["action"], string> = {
  pause: "paused", resume: "resumed", run: "submitted its job", delete: "deleted",
};

export function SchedulesPage() {
  const [notice, setNotice] = useState<NoticeValue>(null);
  return (
    <section aria-labelledby="schedules-title">
      <h1 id="schedules-title">Schedules</h1>
      <Notice notice={notice} />
      <CronSchedules onNotice={setNotice} />
      <DelayedJobs onNotice={setNotice} />
    </section>
  );
}

function CronSchedules({ onNotice }: { onNotice: (n: NoticeValue) => void }) {
  const schedules = useSchedules();
  return (
    <section className="card" aria-labelledby="cron-title">
      <h2 id="cron-title">Cron schedules</h2>
      <QueryState query={schedules} label="schedules" isEmpty={(s) => s.length === 0}
                  empty="No schedule yet: declare one with @app.job(cron=...) or PUT /api/schedules/{name}.">
        {(data) => (
          <div className="table-wrap table-wrap--flat">
            <table className="table" data-testid="schedules-table">
              <caption className="visually-hidden">Cron schedules</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th><th scope="col">Job type</th><th scope="col">Cron</th>
                  <th scope="col">Next five runs</th><th scope="col">Last run</th><th scope="col">State</th>
                  <th scope="col"><span className="visually-hidden">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {data.map((s) => <ScheduleRow key={s.name} schedule={s} onNotice={onNotice} />)}
              </tbody>
            </table>
          </div>
        )}
      </QueryState>
    </section>
  );
}

function ScheduleRow({ schedule: s, onNotice }: { schedule: Schedule; onNotice: (n: NoticeValue) => void }) {
  return (
    <tr data-schedule={s.name}>
      <th scope="row">{s.name}</th>
      <td>{s.type}{s.queue ? <span className="muted"> on {s.queue}</span> : null}</td>
      <td><code>{s.cron}</code> <span className="muted small">{s.tz}</span></td>
      <td>
        <ol className="inline-list small" data-testid="next-runs">
          {s.next_runs_ms.map((t) => <li key={t}><time dateTime={new Date(t).toISOString()}>{formatTime(t)}</time></li>)}
        </ol>
      </td>
      <td data-testid="last-run"><LastRun schedule={s} /></td>
      <td data-testid="schedule-state">
        <StatusBadge status={s.paused ? "paused" : "running"} />
        {s.last_error && <p className="error-text small">{s.last_error}</p>}
      </td>
      <td><ScheduleActions schedule={s} onNotice={onNotice} /></td>
    </tr>
  );
}

function LastRun({ schedule: s }: { schedule: Schedule }) {
  const run = s.last_run;
  if (!run) return <span className="muted">never</span>;
  return (
    <>
      <Link to={links.job(run.job_id)} title={run.job_id}>{shortId(run.job_id)}</Link>{" "}
      <StatusBadge status={run.status ?? "deleted"} />
      {run.finished_ms ? <span className="muted small"> {formatTime(run.finished_ms)}</span> : null}
      {run.error && <p className="error-text small">{run.error}</p>}
    </>
  );
}

function ScheduleActions({ schedule: s, onNotice }: { schedule: Schedule; onNotice: (n: NoticeValue) => void }) {
  const { administers } = usePermissions();
  const action = useScheduleAction();
  if (!administers) return null;
  const act = (kind: ScheduleAction["action"]) => action.mutate({ name: s.name, action: kind }, {
    onSuccess: () => onNotice({ kind: "ok", text: `Schedule ${s.name} ${DONE[kind]}.` }),
    onError: (e) => onNotice({ kind: "error", text: describeError(e) }),
  });
  const busy = action.isPending;
  return (
    <div className="row-actions" role="group" aria-label={`Schedule ${s.name}`}>
      {s.paused
        ? <button type="button" disabled={busy} onClick={() => act("resume")} aria-label={`Resume schedule ${s.name}`}>Resume</button>
        : <button type="button" disabled={busy} onClick={() => act("pause")} aria-label={`Pause schedule ${s.name}`}>Pause</button>}
      <button type="button" disabled={busy} onClick={() => act("run")} aria-label={`Run now: schedule ${s.name}`}>Run now</button>
      <ConfirmButton label="Delete" confirmLabel={`Confirm delete of ${s.name}`} danger disabled={busy}
                     onConfirm={() => act("delete")} />
    </div>
  );
}

function DelayedJobs({ onNotice }: { onNotice: (n: NoticeValue) => void }) {
  const delayed = useDelayed(DELAYED_SHOWN);
  return (
    <section className="card" aria-labelledby="delayed-title">
      <h2 id="delayed-title">Delayed jobs</h2>
      <QueryState query={delayed} label="delayed jobs" isEmpty={(d) => d.total === 0} empty="No delayed job.">
        {(data) => (
          <>
            <p className="muted" data-testid="delayed-total">
              {formatCount(data.total)} delayed; {data.items.length < data.total ? `the ${data.items.length} due soonest` : "all"}, soonest first.
            </p>
            <div className="table-wrap table-wrap--flat">
              <table className="table" data-testid="delayed-table">
                <caption className="visually-hidden">Delayed jobs</caption>
                <thead>
                  <tr>
                    <th scope="col">Job</th><th scope="col">Type</th><th scope="col">Queue</th><th scope="col">Due</th>
                    <th scope="col"><span className="visually-hidden">Actions</span></th>
                  </tr>
                </thead>
                <tbody>
                  {data.items.map((j) => <DelayedRow key={j.id} job={j} onNotice={onNotice} />)}
                </tbody>
              </table>
            </div>
          </>
        )}
      </QueryState>
    </section>
  );
}

function DelayedRow({ job, onNotice }: { job: Job; onNotice: (n: NoticeValue) => void }) {
  const { administers } = usePermissions();
  const runNow = useRunDelayed();
  const cancel = useCancelJob();
  const report = (text: string) => ({
    onSuccess: () => onNotice({ kind: "ok", text }),
    onError: (e: Error) => onNotice({ kind: "error", text: describeError(e) }),
  });
  const busy = runNow.isPending || cancel.isPending;
  return (
    <tr data-job={job.id}>
      <th scope="row"><Link to={links.job(job.id)} title={job.id}>{shortId(job.id)}</Link></th>
      <td>{job.type}</td>
      <td>{job.queue}</td>
      <td>{formatTime(job.due_ms)}</td>
      <td>
        {administers && (
          <div className="row-actions" role="group" aria-label={`Delayed job ${job.id}`}>
            <button type="button" disabled={busy} aria-label={`Run now: job ${job.id}`}
                    onClick={() => runNow.mutate(job.id, report(`Job ${shortId(job.id)} is due now.`))}>Run now</button>
            <ConfirmButton label="Cancel" confirmLabel={`Confirm cancel of ${shortId(job.id)}`} disabled={busy}
                           onConfirm={() => cancel.mutate(job.id, report(`Job ${shortId(job.id)} canceled.`))} />
          </div>
        )}
      </td>
    </tr>
  );
}
