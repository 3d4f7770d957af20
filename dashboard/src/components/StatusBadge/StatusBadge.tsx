/** A job's status (or a worker's or queue's state) as a coloured, readable label. */
export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge badge--${status || "none"}`} data-status={status}>{status || "–"}</span>;
}
