import { describe, expect, it } from "vitest";

import { mergeTail, rangeAt, RANGES } from "./ranges";

const bucket = (start_ms: number, completed = 0) => ({
  start_ms, completed, failed: 0, canceled: 0, duration_p50: null, duration_p95: null,
  duration_p99: null, pickup_p50: null, pickup_p95: null, pickup_p99: null,
});

describe("metrics ranges", () => {
  it("aligns a range on its buckets", () => {
    const r = rangeAt("1h", 3_600_000 * 10 + 1);
    expect(r.interval).toBe(60_000);
    expect(r.until % 60_000).toBe(0);
    expect(r.until - r.since).toBe(RANGES["1h"].spanMs);
  });

  it("replaces re-read buckets, appends new ones and slides the window", () => {
    const base = [bucket(0, 1), bucket(10, 2), bucket(20, 3)];
    const merged = mergeTail(base, [bucket(20, 5), bucket(30, 1)], 30);
    expect(merged.map((b) => [b.start_ms, b.completed])).toEqual([[10, 2], [20, 5], [30, 1]]);
  });
});
