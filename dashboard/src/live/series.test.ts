import { describe, expect, it } from "vitest";

import type { Stats } from "../api/types";
import type { JobEvent } from "./protocol";
import { BUCKET_MS, LiveSeries, WINDOW_MS } from "./series";

const event = (ts: number, kind = "completed"): JobEvent =>
  ({ type: "event", queue: "q", id: `${ts}-0`, job: `j${ts}`, event: kind, status: "completed", seq: 1, ts });

function stats(since: number, until: number, completed: number): Stats {
  const series = [];
  for (let t = since; t < until; t += BUCKET_MS) {
    series.push({ start_ms: t, completed: t === since ? completed : 0, failed: 0, canceled: 0 });
  }
  return { now_ms: until, since_ms: since, until_ms: until, interval_ms: BUCKET_MS, counts: {}, series, queues: [] } as unknown as Stats;
}

describe("LiveSeries", () => {
  it("counts an ended job once, whether the seed or the event brought it", () => {
    const now = 1_000_000_000_000;
    const { since, until } = LiveSeries.seedRange(now);
    const series = new LiveSeries();
    series.addEvent(event(until - 500));  // before the seed's end: the seed has it
    series.addEvent(event(until + 200));  // after: only the event has it
    series.seed(stats(since, until, 10));
    series.addEvent(event(until - 100));  // arrives late, already in the seed
    series.addEvent(event(until + 300, "dead"));
    const points = series.throughput(until + 1_000);
    const total = points.reduce((n, p) => n + p.completed * (BUCKET_MS / 1000), 0);
    const failed = points.reduce((n, p) => n + p.failed * (BUCKET_MS / 1000), 0);
    expect(total).toBe(11);
    expect(failed).toBe(1);
  });

  it("spans the window in whole buckets and ignores other events", () => {
    const series = new LiveSeries();
    series.addEvent(event(5_000_000, "progress"));
    const points = series.throughput(5_000_000);
    expect(points).toHaveLength(WINDOW_MS / BUCKET_MS + 1);
    expect(points.every((p) => p.completed === 0 && p.t % BUCKET_MS === 0)).toBe(true);
    expect(series.endedLive).toBe(0);
  });
});
