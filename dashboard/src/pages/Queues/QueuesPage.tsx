/** Queues: depths by priority, delayed, active, dead; throughput; pause and resume. */
import { useState } from "react";
import { Link } from "react-router";

import { usePauseQueue } from "../../api/mutations";
import { useQueues } from "../../api/queries";
import type { Queue } from "../../api/types";
import { usePermissions } from "../../auth/AuthProvider";
import { Notice, type NoticeValue } from "../../components/Notice/Notice";
import { describeError, QueryState } from "../../components/QueryState/QueryState";
import { StatusBadge } from "../../components/StatusBadge/StatusBadge";
import { formatCount, formatDuration, formatRate } from "../../format";
import { links } from "../../urls";

export function QueuesPage() {
  const queues = useQueues();
  const [notice, setNotice] = useState<NoticeValue>(null);
  return (
    <section aria-labelledby="queues-title">
      <h1 id="queues-title">Queues</h1>
      <Notice notice={notice} />
      <QueryState query={queues} label="queues" isEmpty={(q) => q.length === 0}
                  empty="No queues yet: a queue appears when a job is first submitted to it.">
        {(data) => <QueueTable queues={data} onNotice={setNotice} />}
      </QueryState>
    </section>
  );
}

function QueueTable({ queues, onNotice }: { queues: Queue[]; onNotice: (n: NoticeValue) => void }) {
  const { administers } = usePermissions();
  const pause = usePauseQueue();
  const toggle = (q: Queue) => pause.mutate({ queue: q.name, pause: !q.paused }, {
    onSuccess: (r) => onNotice({ kind: "ok", text: `Queue ${r.name} ${r.paused ? "paused" : "resumed"}.` }),
    onError: (e) => onNotice({ kind: "error", text: describeError(e) }),
  });
  return (
    <div className="table-wrap">
      <table className="table" data-testid="queues-table">
        <caption className="visually-hidden">Queues and their depths</caption>
        <thead>
          <tr>
            <th scope="col">Queue</th><th scope="col">State</th>
            <th scope="col" className="num">High</th><th scope="col" className="num">Normal</th>
            <th scope="col" className="num">Low</th><th scope="col" className="num">Delayed</th>
            <th scope="col" className="num">Active</th><th scope="col" className="num">Dead</th>
            <th scope="col" className="num">Completed</th><th scope="col" className="num">Failed</th>
            <th scope="col">Oldest waiting</th>
            {administers && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {queues.map((q) => (
            <tr key={q.name} data-queue={q.name}>
              <th scope="row"><Link to={links.jobs({ queue: q.name })}>{q.name}</Link></th>
              <td><StatusBadge status={q.paused ? "paused" : "running"} /></td>
              <td className="num">{formatCount(q.high)}</td>
              <td className="num">{formatCount(q.normal)}</td>
              <td className="num">{formatCount(q.low)}</td>
              <td className="num">{formatCount(q.delayed)}</td>
              <td className="num">{formatCount(q.active)}</td>
              <td className="num"><Link to={links.deadLetters(q.name)}>{formatCount(q.dead)}</Link></td>
              <td className="num" title="per second over the last minute">{formatRate(q.throughput?.completed_per_second)}</td>
              <td className="num" title="per second over the last minute">{formatRate(q.throughput?.failed_per_second)}</td>
              <td>{q.oldest_waiting_seconds === null ? "–" : formatDuration(q.oldest_waiting_seconds * 1000)}</td>
              {administers && (
                <td>
                  <button type="button" onClick={() => toggle(q)} disabled={pause.isPending}
                          aria-label={`${q.paused ? "Resume" : "Pause"} queue ${q.name}`}>
                    {q.paused ? "Resume" : "Pause"}
                  </button>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
      <p className="muted small">Throughput: jobs ended per second over the last minute, from the history.</p>
    </div>
  );
}
