/**
 * The metrics page's ranges and how its series grow live: the history store answers a range
 * once, then only its newest buckets are read again as events arrive, and merged in.
 */
import type { TimeBucket } from "../../api/types";

export type RangeKey = "15m" | "1h" | "24h" | "7d";

const MINUTE = 60_000;
/** Each range in buckets of a size that gives 60 to 168 points. */
export const RANGES: Record<RangeKey, { label: string; spanMs: number; intervalMs: number }> = {
  "15m": { label: "15 min", spanMs: 15 * MINUTE, intervalMs: 15_000 },
  "1h": { label: "1 h", spanMs: 60 * MINUTE, intervalMs: MINUTE },
  "24h": { label: "24 h", spanMs: 24 * 60 * MINUTE, intervalMs: 10 * MINUTE },
  "7d": { label: "7 d", spanMs: 7 * 24 * 60 * MINUTE, intervalMs: 60 * MINUTE },
};

export const RANGE_KEYS = Object.keys(RANGES) as RangeKey[];

/** The range ending now, aligned on its bucket size so re-reads land on the same buckets. */
export function rangeAt(key: RangeKey, now: number): { since: number; until: number; interval: number } {
  const { spanMs, intervalMs } = RANGES[key];
  const until = Math.ceil(now / intervalMs) * intervalMs;
  return { since: until - spanMs, until, interval: intervalMs };
}

/** ``base`` with the buckets of ``tail`` replacing or following its own, keeping the span. */
export function mergeTail(base: TimeBucket[], tail: TimeBucket[], spanMs: number): TimeBucket[] {
  if (tail.length === 0) return base;
  const byStart = new Map(base.map((b) => [b.start_ms, b]));
  for (const b of tail) byStart.set(b.start_ms, b);
  const merged = [...byStart.values()].sort((a, b) => a.start_ms - b.start_ms);
  const newest = merged[merged.length - 1]?.start_ms ?? 0;
  return merged.filter((b) => b.start_ms > newest - spanMs);
}
