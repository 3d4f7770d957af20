/**
 * The overview's live time series, kept for a sliding window (15 minutes):
 *
 * - throughput: jobs that ended completed or dead, per second. Seeded from GET /api/stats (the
 *   history store), then counted from WebSocket events. The seed covers times before a whole
 *   second `seededUntil`; events are counted only from that second on, so a job is counted
 *   once whichever arrives first.
 * - depth: waiting, active and delayed jobs over all queues, sampled whenever the queues are
 *   re-read (which the events trigger). The API keeps no history of depths, so this series
 *   starts when the dashboard opens.
 */
import type { Queue, Stats } from "../api/types";
import type { JobEvent } from "./protocol";

export const WINDOW_MS = 15 * 60_000;
export const BUCKET_MS = 5_000;
const SECOND = 1_000;

export type ThroughputPoint = { t: number; completed: number; failed: number };
export type DepthPoint = { t: number; waiting: number; active: number; delayed: number };

type Counts = { completed: number; failed: number };

export class LiveSeries {
  private readonly seeded = new Map<number, Counts>();  // by BUCKET_MS bucket start
  private readonly live = new Map<number, Counts>();  // by second
  private seededUntil: number | null = null;
  private depth: DepthPoint[] = [];
  private readonly listeners = new Set<() => void>();
  private version = 0;
  private notifyTimer: ReturnType<typeof setTimeout> | undefined;
  /** Jobs that ended since the page opened, as counted from events (shown, and tested). */
  endedLive = 0;

  /** The range to ask GET /api/stats for: whole buckets, up to a whole second. */
  static seedRange(now: number): { since: number; until: number } {
    const until = Math.floor(now / SECOND) * SECOND;
    const since = Math.floor((until - WINDOW_MS) / BUCKET_MS) * BUCKET_MS;
    return { since, until };
  }

  seed(stats: Stats): void {
    this.seeded.clear();
    for (const bucket of stats.series) {
      this.seeded.set(bucket.start_ms, { completed: bucket.completed, failed: bucket.failed });
    }
    this.seededUntil = stats.until_ms;
    for (const second of this.live.keys()) {
      if (second < stats.until_ms) this.live.delete(second);
    }
    this.changed();
  }

  /** Forget the seed (after a gap in the events): the next seed starts over. */
  reset(): void {
    this.seededUntil = null;
    this.seeded.clear();
    this.live.clear();
    this.changed();
  }

  addEvent(event: JobEvent): void {
    const failed = event.event === "dead";
    if (event.event !== "completed" && !failed) return;
    const second = Math.floor(event.ts / SECOND) * SECOND;
    if (this.seededUntil !== null && second < this.seededUntil) return;
    const counts = this.live.get(second) ?? { completed: 0, failed: 0 };
    if (failed) counts.failed += 1;
    else counts.completed += 1;
    this.live.set(second, counts);
    this.endedLive += 1;
    this.changed();
  }

  addDepth(queues: Queue[], t: number): void {
    const sum = (pick: (q: Queue) => number) => queues.reduce((n, q) => n + pick(q), 0);
    this.depth.push({
      t, waiting: sum((q) => q.waiting), active: sum((q) => q.active), delayed: sum((q) => q.delayed),
    });
    this.depth = this.depth.filter((p) => p.t >= t - WINDOW_MS);
    this.changed();
  }

  /** Per-second rates in BUCKET_MS buckets over the window ending at `now`. */
  throughput(now: number): ThroughputPoint[] {
    const end = Math.floor(now / BUCKET_MS) * BUCKET_MS;
    const points: ThroughputPoint[] = [];
    const live = this.liveByBucket(end - WINDOW_MS);
    for (let t = end - WINDOW_MS; t <= end; t += BUCKET_MS) {
      const seeded = this.seeded.get(t) ?? { completed: 0, failed: 0 };
      const extra = live.get(t) ?? { completed: 0, failed: 0 };
      points.push({
        t,
        completed: (seeded.completed + extra.completed) / (BUCKET_MS / SECOND),
        failed: (seeded.failed + extra.failed) / (BUCKET_MS / SECOND),
      });
    }
    return points;
  }

  depthSeries(now: number): DepthPoint[] {
    const points = this.depth.filter((p) => p.t >= now - WINDOW_MS);
    const last = points[points.length - 1];
    // Depths change only with events: with none since the last sample, it still holds now.
    return last && last.t < now ? [...points, { ...last, t: now }] : points;
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getVersion = (): number => this.version;

  private liveByBucket(from: number): Map<number, Counts> {
    const out = new Map<number, Counts>();
    for (const [second, counts] of this.live) {
      if (second < from) {
        this.live.delete(second);
        continue;
      }
      const bucket = Math.floor(second / BUCKET_MS) * BUCKET_MS;
      const sum = out.get(bucket) ?? { completed: 0, failed: 0 };
      sum.completed += counts.completed;
      sum.failed += counts.failed;
      out.set(bucket, sum);
    }
    return out;
  }

  /** Listeners hear of changes at most twice a second, however many events arrive. */
  private changed(): void {
    if (this.notifyTimer !== undefined) return;
    this.notifyTimer = setTimeout(() => {
      this.notifyTimer = undefined;
      this.version += 1;
      for (const listener of this.listeners) listener();
    }, 500);
  }
}
