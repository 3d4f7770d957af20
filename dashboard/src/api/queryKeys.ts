/**
 * Every TanStack Query key of the dashboard. The live-events layer invalidates by these roots,
 * so a key spelled anywhere else would miss the updates.
 */
import type { DeadFilter, JobSearch } from "./types";

export const queryKeys = {
  /** Totals and the queues now: re-read as events arrive. */
  stats: ["stats"] as const,
  /** The throughput history the overview's chart starts from: read once, then events add up. */
  seriesSeed: ["series-seed"] as const,
  queues: ["queues"] as const,
  workers: ["workers"] as const,
  types: ["types"] as const,
  jobs: (search: JobSearch) => ["jobs", search] as const,
  jobsRoot: ["jobs"] as const,
  job: (id: string) => ["job", id] as const,
  jobRoot: ["job"] as const,
  dlq: (queue: string, offset: number, limit: number) => ["dlq", queue, offset, limit] as const,
  dlqOf: (queue: string) => ["dlq", queue] as const,
  dlqRoot: ["dlq"] as const,
  dlqFind: (queue: string, filter: DeadFilter, offset: number) => ["dlq", queue, "find", filter, offset] as const,
  dlqRun: (id: string) => ["dlq-run", id] as const,
  schedules: ["schedules"] as const,
  /** A metrics range from the history store, read once per range (live reads only its tail). */
  metrics: (queue: string, type: string, range: string) => ["metrics", queue, type, range] as const,
  delayed: ["delayed"] as const,
} as const;
