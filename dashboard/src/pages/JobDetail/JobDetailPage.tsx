/**
 * One job: arguments, result, every attempt (worker, start, end, error with traceback), live
 * status and progress (patched in from the WebSocket), and cancel, retry, delete.
 */
import { useEffect, useState } from "react";
import { Link, useParams } from "react-router";

import { ApiError } from "../../api/client";
import { useCancelJob, useDeleteJob, useRetryJob } from "../../api/mutations";
import { useJob } from "../../api/queries";
import { TERMINAL, type Attempt, type Job } from "../../api/types";
import { usePermissions } from "../../auth/AuthProvider";
import { ConfirmButton } from "../../components/ConfirmButton/ConfirmButton";
import { Notice, type NoticeValue } from "../../components/Notice/Notice";
import { describeError, QueryState } from "../../components/QueryState/QueryState";
import { StatusBadge } from "../../components/StatusBadge/StatusBadge";
import { formatDuration, formatJson, formatTime } from "../../format";
import { useLive } from "../../live/LiveProvider";
import { links } from "../../urls";
import { attemptView, currentError } from "./attempts";

export function JobDetailPage() {
  const { jobId = "" } = useParams();
  const job = useJob(jobId);
  const { watch } = useLive();
  const [notice, setNotice] = useState<NoticeValue>(null);
  useEffect(() => watch(jobId), [jobId, watch]);

  const notFound = job.error instanceof ApiError && job.error.status === 404;
  return (
    <section aria-labelledby="job-title">
      <h1 id="job-title">Job <code className="job-id">{jobId}</code></h1>
      <Notice notice={notice} />
      {notFound ? (
        <div className="state state--empty" role="alert">
          No job with this id: it never existed, or its history was deleted. <Link to={links.jobs()}>Search jobs</Link>.
        </div>
      ) : (
        <QueryState query={job} label="the job">
          {(data) => <JobView job={data} onNotice={setNotice} />}
        </QueryState>
      )}
    </section>
  );
}

function JobView({ job, onNotice }: { job: Job; onNotice: (n: NoticeValue) => void }) {
  const running = job.status === "active";
  return (
    <div className="detail">
      <div className="card detail__summary">
        <dl className="facts">
          <div><dt>Status</dt><dd data-testid="job-status"><StatusBadge status={job.status} />
            {job.cancel_requested && <span className="muted"> (cancel requested)</span>}</dd></div>
          <div><dt>Type</dt><dd>{job.type}</dd></div>
          <div><dt>Queue</dt><dd>{job.queue}</dd></div>
          <div><dt>Priority</dt><dd>{job.priority}</dd></div>
          <div><dt>Attempt</dt><dd data-testid="job-attempt">{attemptView(job).text}</dd></div>
          <div><dt>Worker</dt><dd>{job.worker ?? "–"}</dd></div>
          <div><dt>Submitted</dt><dd>{formatTime(job.created_ms)}</dd></div>
          <div><dt>Due</dt><dd>{formatTime(job.due_ms)}</dd></div>
          <div><dt>Started</dt><dd>{formatTime(job.started_ms)}</dd></div>
          <div><dt>Finished</dt><dd>{formatTime(job.finished_ms)}</dd></div>
        </dl>
        {(running || job.progress != null) && <Progress job={job} />}
        <JobError job={job} />
        <Actions job={job} onNotice={onNotice} />
      </div>
      <div className="detail__data">
        <section className="card" aria-labelledby="args-title">
          <h2 id="args-title">Arguments</h2>
          <pre className="code" data-testid="job-args">{formatJson(job.args)}</pre>
        </section>
        <section className="card" aria-labelledby="result-title">
          <h2 id="result-title">Result</h2>
          {job.status === "completed"
            ? <pre className="code" data-testid="job-result">{formatJson(job.result)}</pre>
            : <p className="muted">No result {TERMINAL.has(job.status) ? "(the job did not complete)" : "yet"}.</p>}
        </section>
      </div>
      <Timeline attempts={job.attempts} />
      {Object.keys(job.meta).length > 0 && (
        <section className="card" aria-labelledby="meta-title">
          <h2 id="meta-title">Metadata</h2>
          <pre className="code">{formatJson(job.meta)}</pre>
        </section>
      )}
    </div>
  );
}

/** The job's error while it is current; a requeued job's last error reads as past. */
function JobError({ job }: { job: Job }) {
  const shown = currentError(job);
  if (shown === null) return null;
  if (shown.current) return <p className="error-text" data-testid="job-error">{shown.error}</p>;
  return <p className="muted" data-testid="job-last-error">Last error, before it was queued again: {shown.error}</p>;
}

function Progress({ job }: { job: Job }) {
  const percent = Math.round((job.progress ?? 0) * 100);
  return (
    <div className="progress-row">
      <div className="progress" role="progressbar" aria-label="Progress" aria-valuemin={0} aria-valuemax={100}
           aria-valuenow={percent} data-testid="job-progress">
        <div className="progress__bar" style={{ width: `${percent}%` }} />
      </div>
      <span>{percent}%{job.progress_message ? ` — ${job.progress_message}` : ""}</span>
    </div>
  );
}

function Actions({ job, onNotice }: { job: Job; onNotice: (n: NoticeValue) => void }) {
  const { administers } = usePermissions();
  const cancel = useCancelJob();
  const retry = useRetryJob();
  const remove = useDeleteJob();
  if (!administers) return null;
  const report = (verb: string) => ({
    onSuccess: () => onNotice({ kind: "ok", text: `Job ${verb}.` }),
    onError: (e: Error) => onNotice({ kind: "error", text: describeError(e) }),
  });
  const busy = cancel.isPending || retry.isPending || remove.isPending;
  return (
    <div className="actions" role="group" aria-label="Job actions">
      {!TERMINAL.has(job.status) && (
        <ConfirmButton label="Cancel job" confirmLabel="Confirm cancel" disabled={busy || job.cancel_requested}
                       onConfirm={() => cancel.mutate(job.id, report("canceled (or asked to stop)"))} />
      )}
      {(job.status === "dead" || job.status === "canceled") && (
        <button type="button" disabled={busy} onClick={() => retry.mutate(job.id, report("queued again"))}>Retry</button>
      )}
      {job.status !== "active" && (
        <ConfirmButton label="Delete" confirmLabel="Confirm delete" danger disabled={busy}
                       onConfirm={() => remove.mutate(job.id, report("deleted"))} />
      )}
    </div>
  );
}

function Timeline({ attempts }: { attempts: Attempt[] }) {
  return (
    <section className="card" aria-labelledby="attempts-title">
      <h2 id="attempts-title">Attempts</h2>
      {attempts.length === 0 ? <p className="muted">No attempt has run yet.</p> : (
        <ol className="timeline" data-testid="attempts">
          {attempts.map((a, i) => [
            <li key={`${a.attempt}-${i}`} className="timeline__item" data-outcome={a.outcome ?? "running"}>
              <div className="timeline__head">
                <strong>Attempt {a.attempt}</strong>
                <StatusBadge status={a.outcome ?? "running"} />
                <span>on {a.worker ?? "–"}</span>
                <span className="muted">{formatTime(a.started_ms)} → {a.finished_ms ? formatTime(a.finished_ms) : "running"}</span>
                {a.started_ms && a.finished_ms && <span className="muted">({formatDuration(a.finished_ms - a.started_ms)})</span>}
              </div>
              {a.error && <p className="error-text">{a.error.type}: {a.error.message}</p>}
              {a.traceback && (
                <details>
                  <summary>Traceback</summary>
                  <pre className="code code--traceback">{a.traceback}</pre>
                </details>
              )}
            </li>,
            (a.outcome === "dead" || a.outcome === "canceled") && i < attempts.length - 1 && (
              <li key={`retried-${a.attempt}-${i}`} className="timeline__item timeline__item--retried" data-outcome="retried">
                <span className="muted">Retried: a fresh budget of attempts from here</span>
              </li>
            ),
          ])}
        </ol>
      )}
    </section>
  );
}
