/**
 * What a live event changes on the screen. Job detail gets progress and status patched in at
 * once; everything else is re-read, at most once a second per query, however many events
 * arrive (so 1,000 jobs a second cost one request a second per open view, not 1,000).
 *
 * A re-read still in flight is never cancelled for a newer one (under load that starved every
 * view: each answer was thrown away before it landed). Each view paces itself, with one read
 * in flight at a time: reads start at most once per FLUSH_MS, the next only after the last
 * has landed (so a slow API is asked less often), with a pause of half its time after a read
 * slower than SLOW_MS, and FLUSH_MS doubled per failed read in a row, up to MAX_BACKOFF_MS.
 * A slow view never holds back a fast one, and only keys some query holds are tracked (an
 * event's work must not grow with the number of jobs seen). The invalidator also
 * says how far behind the events the screen is (`Freshness`), which the live badge shows.
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
/** A read slower than this is followed by a pause of half its time (the API struggles). */
export const SLOW_MS = 5_000;
/** The longest wait between reads while the API keeps failing. */
export const MAX_BACKOFF_MS = 30_000;

/** How current the screen is. */
export type Freshness = {
  /** When the first event not yet covered by a finished re-read arrived (null: none is). */
  behindSince: number | null;
  /** When the last round of re-reads finished well. */
  lastRead: number | null;
};

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

/** One query key's re-read state: each view paces itself, so a slow one never holds back
 * the others. */
type View = {
  queryKey: QueryKey;
  /** When the first event not yet read for this view arrived (null: none). */
  dirtySince: number | null;
  /** While reading: the oldest event the read covers (null: not reading). */
  readingSince: number | null;
  reading: boolean;
  failures: number;
  tookMs: number;
  /** The next read starts no earlier than this. */
  notBefore: number;
};

export class Invalidator {
  private readonly views = new Map<string, View>();
  private readonly trailing = new Map<string, QueryKey>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = Infinity;
  private trailingTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private freshness: Freshness = { behindSince: null, lastRead: null };
  private readonly listeners = new Set<() => void>();

  constructor(private readonly queryClient: QueryClient,
              private readonly now: () => number = Date.now) {}

  onEvent(event: JobEvent): void {
    if (event.job !== "") {
      this.queryClient.setQueryData<Job>(queryKeys.job(event.job),
        (job) => (job ? patchJob(job, event) : job));
    }
    const now = this.now();
    for (const queryKey of keysForEvent(event)) {
      const view = this.viewShown(queryKey);
      if (view === null || view.dirtySince !== null) continue;
      view.dirtySince = now;
      // A burst's first event waits FLUSH_MS, so the burst is read once.
      view.notBefore = Math.max(view.notBefore, now + FLUSH_MS);
    }
    this.refreshFreshness();
    this.schedule();
  }

  /** Everything may have changed (events were lost): re-read all. */
  all(): void {
    void this.queryClient.invalidateQueries({}, { cancelRefetch: false });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.trailingTimer);
    this.timer = undefined;
  }

  /** The wait after a view's read landed before its next one: reads start at most once per
   * FLUSH_MS (so a read that took longer is followed at once: one in flight at a time);
   * after a read slower than SLOW_MS, half as long as it took more; after failed reads,
   * FLUSH_MS doubled per failure in a row. At most MAX_BACKOFF_MS. */
  nextDelay(queryKey: QueryKey = queryKeys.queues): number {
    const view = this.views.get(JSON.stringify(queryKey));
    if (view === undefined) return FLUSH_MS;
    const slow = view.tookMs > SLOW_MS ? view.tookMs / 2 : 0;
    const wait = view.failures > 0
      ? Math.max(slow, FLUSH_MS * 2 ** view.failures)
      : Math.max(slow, FLUSH_MS - view.tookMs);
    return Math.min(MAX_BACKOFF_MS, wait);
  }

  readonly subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  readonly getSnapshot = (): Freshness => this.freshness;

  /** The view of a key some query holds (null: none does, so there is nothing to re-read).
   * Every event names its job, so under load a view per job seen would pile up by the
   * thousand, and each event's work, which scans the views, with them. */
  private viewShown(queryKey: QueryKey): View | null {
    const id = JSON.stringify(queryKey);
    let view = this.views.get(id);
    if (view === undefined) {
      if (!this.isHeld(queryKey)) return null;
      view = { queryKey, dirtySince: null, readingSince: null, reading: false, failures: 0,
               tookMs: 0, notBefore: 0 };
      this.views.set(id, view);
    }
    return view;
  }

  private isHeld(queryKey: QueryKey): boolean {
    return this.queryClient.getQueryCache().findAll({ queryKey }).length > 0;
  }

  private refreshFreshness(lastRead?: number): void {
    let behindSince: number | null = null;
    for (const view of this.views.values()) {
      for (const since of [view.dirtySince, view.readingSince]) {
        if (since !== null && (behindSince === null || since < behindSince)) behindSince = since;
      }
    }
    const next = { behindSince, lastRead: lastRead ?? this.freshness.lastRead };
    if (next.behindSince === this.freshness.behindSince
        && next.lastRead === this.freshness.lastRead) return;
    this.freshness = next;
    for (const listener of this.listeners) listener();
  }

  /** Wake up when the earliest waiting view may be read. */
  private schedule(): void {
    if (this.stopped) return;
    let at = Infinity;
    for (const view of this.views.values()) {
      if (view.dirtySince !== null && !view.reading) at = Math.min(at, view.notBefore);
    }
    if (at === Infinity || at >= this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.tick(), Math.max(0, at - this.now()));
  }

  private tick(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.now();
    for (const view of this.views.values()) {
      if (view.dirtySince !== null && !view.reading && view.notBefore <= now) {
        void this.read(view);
      }
    }
    this.schedule();
  }

  private async read(view: View): Promise<void> {
    view.reading = true;
    view.readingSince = view.dirtySince;
    view.dirtySince = null;
    const started = this.now();
    await this.queryClient.invalidateQueries({ queryKey: view.queryKey }, { cancelRefetch: false });
    const landed = this.now();
    view.reading = false;
    view.tookMs = landed - started;
    if (this.failedSince(view.queryKey, started)) {
      view.failures += 1;
      const since = view.readingSince ?? landed;
      view.dirtySince = view.dirtySince === null ? since : Math.min(since, view.dirtySince);
      view.readingSince = null;
      view.notBefore = landed + this.nextDelay(view.queryKey);
      this.refreshFreshness();
    } else {
      view.failures = 0;
      view.readingSince = null;
      view.notBefore = landed + this.nextDelay(view.queryKey);
      this.refreshFreshness(landed);
      this.trail(view.queryKey);
      // Its queries are gone (the page showing them was left and they were collected).
      if (view.dirtySince === null && !this.isHeld(view.queryKey)) {
        this.views.delete(JSON.stringify(view.queryKey));
      }
    }
    this.schedule();
  }

  private failedSince(queryKey: QueryKey, since: number): boolean {
    return this.queryClient.getQueryCache().findAll({ queryKey }).some(
      (q) => q.state.status === "error" && q.state.errorUpdatedAt >= since);
  }

  /** Read a view once more a moment after its last read (the history lags the events). */
  private trail(queryKey: QueryKey): void {
    this.trailing.set(JSON.stringify(queryKey), queryKey);
    clearTimeout(this.trailingTimer);
    this.trailingTimer = setTimeout(() => {
      const again = [...this.trailing.values()];
      this.trailing.clear();
      if (this.stopped) return;
      for (const queryKey of again) {
        void this.queryClient.invalidateQueries({ queryKey }, { cancelRefetch: false });
      }
    }, TRAILING_MS);
  }
}
