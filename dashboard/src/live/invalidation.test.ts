import { QueryClient, QueryObserver } from "@tanstack/react-query";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { queryKeys } from "../api/queryKeys";
import { FLUSH_MS, Invalidator, MAX_BACKOFF_MS, SLOW_MS } from "./invalidation";
import type { JobEvent } from "./protocol";

const event = (n: number): JobEvent => ({
  type: "event", queue: "q", id: `${n}-0`, job: `j${n}`, event: "completed", status: "completed",
  seq: 1, ts: n,
});

/** An active ``queues`` query whose every answer takes ``tookMs`` (and fails if told). */
function slowQueues(client: QueryClient, tookMs: number, fail: () => boolean = () => false) {
  const calls = { started: 0, aborted: 0, answered: 0 };
  const observer = new QueryObserver(client, {
    queryKey: queryKeys.queues,
    retry: false,
    queryFn: ({ signal }) => new Promise<number>((resolve, reject) => {
      calls.started += 1;
      signal.addEventListener("abort", () => { calls.aborted += 1; });
      setTimeout(() => {
        if (fail()) { reject(new Error("503")); return; }
        calls.answered += 1;
        resolve(calls.answered);
      }, tookMs);
    }),
  });
  const unsubscribe = observer.subscribe(() => undefined);
  return { calls, observer, unsubscribe };
}

describe("Invalidator", () => {
  let client: QueryClient;
  beforeEach(() => {
    vi.useFakeTimers();
    client = new QueryClient();
  });
  afterEach(() => {
    client.clear();
    vi.useRealTimers();
  });

  it("never cancels a re-read in flight, so a slow API's answers land", async () => {
    const { calls, observer, unsubscribe } = slowQueues(client, 3_000);
    await vi.advanceTimersByTimeAsync(3_000);  // the first read
    const inv = new Invalidator(client);
    for (let i = 0; i < 300; i += 1) {  // 30 s of events, ten a second
      inv.onEvent(event(i));
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(calls.aborted).toBe(0);
    expect(calls.answered).toBeGreaterThanOrEqual(5);  // each answer took 3 s
    expect(observer.getCurrentResult().data).toBe(calls.answered);
    inv.stop();
    unsubscribe();
  });

  it("paces each view after its read landed, slower for a slow API, backing off on failures", async () => {
    let failing = true;
    const { unsubscribe } = slowQueues(client, 2_500, () => failing);
    await vi.advanceTimersByTimeAsync(2_500);  // the first read (failed)
    const inv = new Invalidator(client);
    expect(inv.nextDelay()).toBe(FLUSH_MS);  // (the queues view's)
    const delays: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      inv.onEvent(event(i));
      await vi.advanceTimersByTimeAsync(inv.nextDelay() + 2_600);
      delays.push(inv.nextDelay());
    }
    expect(delays[0]).toBe(2 * FLUSH_MS);  // failed once
    for (let i = 1; i < delays.length; i += 1) {
      expect(delays[i]).toBeGreaterThanOrEqual(Math.min(MAX_BACKOFF_MS, delays[i - 1]!));
    }
    expect(delays.at(-1)).toBe(MAX_BACKOFF_MS);
    failing = false;
    await vi.advanceTimersByTimeAsync(MAX_BACKOFF_MS + 3_000);
    expect(inv.nextDelay()).toBeLessThan(3_000);  // one good round: back to its pace
    inv.stop();
    unsubscribe();
  });

  it("re-reads only what some query holds, however many jobs the events name", async () => {
    // The overview under load: 300 new jobs a second, three events each. A view per job named
    // made every event scan thousands of views, and the page fell seconds behind.
    const held = [queryKeys.stats, queryKeys.queues, queryKeys.workers];
    const unsubscribe = held.map((queryKey) => new QueryObserver(client, {
      queryKey, queryFn: () => Date.now(),
    }).subscribe(() => undefined));
    client.setQueryData(queryKeys.job("j7"), { id: "j7" });  // a job page seen before
    await vi.advanceTimersByTimeAsync(0);
    const reread: string[] = [];
    const invalidate = client.invalidateQueries.bind(client);
    client.invalidateQueries = (filters, options) => {
      reread.push(JSON.stringify(filters?.queryKey));
      return invalidate(filters, options);
    };
    const inv = new Invalidator(client);
    let n = 0;
    for (let tenth = 0; tenth < 100; tenth += 1) {  // 10 s
      for (let i = 0; i < 90; i += 1, n += 1) {
        const name = ["submitted", "active", "completed"][n % 3]!;
        inv.onEvent({ ...event(n), job: `j${Math.floor(n / 3)}`, event: name, status: "active" });
      }
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(new Set(reread)).toEqual(new Set([...held, queryKeys.job("j7")].map((k) => JSON.stringify(k))));
    expect(reread.length).toBeLessThanOrEqual(4 * 12);  // one read a second each, and a trailing one
    inv.stop();
    unsubscribe.forEach((stop) => stop());
  });

  it("says how far behind the events the views are", async () => {
    const { unsubscribe } = slowQueues(client, 200);
    await vi.advanceTimersByTimeAsync(200);
    const inv = new Invalidator(client);
    expect(inv.getSnapshot().behindSince).toBeNull();
    const seen: (number | null)[] = [];
    inv.subscribe(() => seen.push(inv.getSnapshot().behindSince));
    const at = Date.now();
    inv.onEvent(event(1));
    expect(inv.getSnapshot().behindSince).toBe(at);
    await vi.advanceTimersByTimeAsync(FLUSH_MS + 250);
    expect(inv.getSnapshot().behindSince).toBeNull();
    expect(inv.getSnapshot().lastRead).not.toBeNull();
    expect(seen.at(-1)).toBeNull();
    expect(new Set(seen.slice(0, -1))).toEqual(new Set([at]));
    inv.stop();
    unsubscribe();
  });
});

describe("Invalidator views", () => {
  it("pauses after a read slower than SLOW_MS", async () => {
    vi.useFakeTimers();
    const client = new QueryClient();
    const slow = slowQueues(client, SLOW_MS + 1_000);
    await vi.advanceTimersByTimeAsync(SLOW_MS + 1_000);
    const inv = new Invalidator(client);
    inv.onEvent(event(1));
    await vi.advanceTimersByTimeAsync(FLUSH_MS + SLOW_MS + 1_100);
    expect(slow.calls.answered).toBe(2);
    expect(inv.nextDelay()).toBe((SLOW_MS + 1_000) / 2);
    inv.stop();
    slow.unsubscribe();
    client.clear();
    vi.useRealTimers();
  });

  it("a slow view does not hold back a fast one", async () => {
    vi.useFakeTimers();
    const client = new QueryClient();
    const fast = { answered: 0 };
    const slow = slowQueues(client, 10_000);
    const unsubscribe = new QueryObserver(client, {
      queryKey: queryKeys.stats, retry: false,
      queryFn: () => new Promise<number>((resolve) => {
        setTimeout(() => { fast.answered += 1; resolve(fast.answered); }, 100);
      }),
    }).subscribe(() => undefined);
    await vi.advanceTimersByTimeAsync(10_000);
    const inv = new Invalidator(client);
    for (let i = 0; i < 100; i += 1) {  // 10 s of events
      inv.onEvent(event(i));
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(fast.answered).toBeGreaterThanOrEqual(8);  // about one read a second
    expect(slow.calls.answered).toBeLessThanOrEqual(2);
    inv.stop();
    unsubscribe();
    slow.unsubscribe();
    client.clear();
    vi.useRealTimers();
  });
});
