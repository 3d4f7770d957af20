/** A warning naming the paused queues (their jobs wait until someone resumes them). */
import { Link } from "react-router";

import type { Queue } from "../../api/types";
import { formatCount } from "../../format";
import { routes } from "../../urls";

export function PausedQueues({ queues }: { queues: Queue[] }) {
  const paused = queues.filter((q) => q.paused);
  if (paused.length === 0) return null;
  return (
    <p className="notice notice--warn" data-testid="paused-queues">
      <strong>{paused.length === 1 ? "1 queue is paused" : `${paused.length} queues are paused`}:</strong>{" "}
      {paused.map((q, i) => (
        <span key={q.name}>{i > 0 && ", "}<span className="badge badge--paused">{q.name}</span> ({formatCount(q.waiting)} waiting)</span>
      ))}
      . Workers take nothing from {paused.length === 1 ? "it" : "them"} until resumed on <Link to={routes.queues}>Queues</Link>.
    </p>
  );
}
