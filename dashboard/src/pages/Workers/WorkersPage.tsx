/**
 * Workers: who is alive (from heartbeats), what each runs now, processed and failed counts,
 * uptime. Job events re-read the list at once; heartbeats are not events, so their ages are
 * also re-read every few seconds.
 */
import { Link } from "react-router";

import { useWorkers } from "../../api/queries";
import type { CurrentJob, Worker } from "../../api/types";
import { Ago, useNow } from "../../components/Ago/Ago";
import { QueryState } from "../../components/QueryState/QueryState";
import { StatusBadge } from "../../components/StatusBadge/StatusBadge";
import { formatCount, formatDuration, shortId } from "../../format";
import { links } from "../../urls";

export function WorkersPage() {
  const workers = useWorkers();
  return (
    <section aria-labelledby="workers-title">
      <h1 id="workers-title">Workers</h1>
      <QueryState query={workers} label="workers" isEmpty={(w) => w.length === 0}
                  empty="No worker has sent a heartbeat: start one with `conveyor worker`.">
        {(data) => <WorkerTable workers={[...data].sort((a, b) => Number(b.alive) - Number(a.alive))} />}
      </QueryState>
    </section>
  );
}

/** Heartbeats carry `current` as free-form objects; keep the ones that name a job. */
function currentJobs(worker: Worker): CurrentJob[] {
  return worker.current.filter((c): c is CurrentJob => typeof c.id === "string");
}

function WorkerTable({ workers }: { workers: Worker[] }) {
  const now = useNow();
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
          </tr>
        </thead>
        <tbody>
          {workers.map((w) => {
            const current = currentJobs(w);
            return (
              <tr key={w.id} data-worker={w.id} data-alive={w.alive}>
                <th scope="row">{w.id}<div className="muted small">{w.host} pid {w.pid}</div></th>
                <td><StatusBadge status={w.alive ? "alive" : "silent"} /></td>
                <td>{w.queues.join(", ")}</td>
                <td><Ago ms={w.beat_ms} /></td>
                <td>{w.started_ms ? formatDuration(now - w.started_ms) : "–"}</td>
                <td className="num">{current.length} / {w.concurrency}</td>
                <td className="num" data-testid="processed">{formatCount(w.processed)}</td>
                <td className="num">{formatCount(w.failed)}</td>
                <td>
                  {current.length === 0 ? <span className="muted">idle</span> : (
                    <ul className="inline-list">
                      {current.slice(0, 10).map((c) => (
                        <li key={c.id}><Link to={links.job(c.id)} title={c.id}>{shortId(c.id)}</Link> {c.type}</li>
                      ))}
                      {current.length > 10 && <li className="muted">and {current.length - 10} more</li>}
                    </ul>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
