/**
 * What a live event changes on the screen. Job detail gets progress and status patched in at
 * once; everything else is re-read, at most once a second per query, however many events
 * arrive (so 1,000 jobs a second cost one request a second per open view, not 1,000).
 */
import type { QueryClient, QueryKey } from "@tanstack/react-query";

import { queryKeys } from "../api/queryKeys";
import type { Job, JobStatus } from "../api/types";
import type { JobEvent } from "./protocol";

export const FLUSH_MS = 1_000;
/**
 * The history store records events a moment after they happen: views it backs are read once
 * more this long after the last flush, so the last change of a burst is not missed.
 */
export const TRAILING_MS = 2_500;

/** Events that put a job into, or take it out of, a dead-letter queue. */
const DLQ_EVENTS = new Set(["dead", "retried", "deleted"]);
/** Events that change what a worker runs or its counts. */
const WORKER_EVENTS = new Set(["active", "completed", "retrying", "dead", "canceled", "released"]);

export function keysForEvent(event: JobEvent): QueryKey[] {
  if (event.job === "") return [queryKeys.queues, queryKeys.stats];  // pause, resume
  const keys: QueryKey[] = [queryKeys.queues, queryKeys.jobsRoot, queryKeys.stats];
  if (event.event !== "progress") keys.push(queryKeys.job(event.job));
  if (DLQ_EVENTS.has(event.event)) keys.push(queryKeys.dlqOf(event.queue));
  if (WORKER_EVENTS.has(event.event)) keys.push(queryKeys.workers);
  return keys;
}

/** The job as the event leaves it (for the detail page, before the re-read lands). */
export function patchJob(job: Job, event: JobEvent): Job {
  const next: Job = { ...job };
  if (event.status) next.status = event.status as JobStatus;
  if (typeof event.attempt === "number") next.attempt = event.attempt;
  if (typeof event.worker === "string") next.worker = event.worker;
  if (event.event === "progress") {
    const progress = Number(event.progress);
    if (Number.isFinite(progress)) next.progress = progress;
    if (typeof event.message === "string") next.progress_message = event.message;
  }
  if (event.event === "cancel_requested") next.cancel_requested = true;
  return next;
}

export class Invalidator {
  private readonly dirty = new Map<string, QueryKey>();
  private readonly trailing = new Map<string, QueryKey>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private trailingTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly queryClient: QueryClient) {}

  onEvent(event: JobEvent): void {
    if (event.job !== "") {
      this.queryClient.setQueryData<Job>(queryKeys.job(event.job),
        (job) => (job ? patchJob(job, event) : job));
    }
    for (const key of keysForEvent(event)) this.dirty.set(JSON.stringify(key), key);
    this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Everything may have changed (events were lost): re-read all. */
  all(): void {
    void this.queryClient.invalidateQueries();
  }

  stop(): void {
    clearTimeout(this.timer);
    clearTimeout(this.trailingTimer);
    this.timer = undefined;
  }

  private flush(): void {
    this.timer = undefined;
    const keys = [...this.dirty.entries()];
    this.dirty.clear();
    for (const [id, queryKey] of keys) {
      this.trailing.set(id, queryKey);
      void this.queryClient.invalidateQueries({ queryKey });
    }
    clearTimeout(this.trailingTimer);
    this.trailingTimer = setTimeout(() => {
      const again = [...this.trailing.values()];
      this.trailing.clear();
      for (const queryKey of again) void this.queryClient.invalidateQueries({ queryKey });
    }, TRAILING_MS);
  }
}
