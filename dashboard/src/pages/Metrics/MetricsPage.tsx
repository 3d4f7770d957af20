/**
 * Metrics over time, from the history store: throughput (completed and failed), run time and
 * pickup delay (p50, p95, p99), for all queues or one queue, any job type or one, over 15 min,
 * 1 h, 24 h or 7 d. The range is read once; as live events arrive its newest buckets are read
 * again (at most every few seconds) and merged in, so the charts move without re-reading days.
 */
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { useSearchParams } from "react-router";

import { readSeries, useJobTypes, useMetrics, useQueues, type MetricsScope } from "../../api/queries";
import type { TimeBucket } from "../../api/types";
import { LineChart } from "../../components/LineChart/LineChart";
import { QueryState } from "../../components/QueryState/QueryState";
import { formatCount, formatDuration, formatRate } from "../../format";
import { useLive } from "../../live/LiveProvider";
import { mergeTail, RANGE_KEYS, RANGES, rangeAt, type RangeKey } from "./ranges";

/** Live re-reads of the newest buckets: at most this often, and once more after a burst. */
const TAIL_EVERY_MS = 3_000;

export function MetricsPage() {
  const [params, setParams] = useSearchParams();
  const range = (RANGE_KEYS.find((k) => k === params.get("range")) ?? "1h") as RangeKey;
  const scope: MetricsScope = { queue: params.get("queue") ?? "", type: params.get("type") ?? "" };
  const set = (name: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    setParams(next, { replace: true });
  };
  return (
    <section aria-labelledby="metrics-title">
      <h1 id="metrics-title">Metrics</h1>
      <Scope scope={scope} range={range} onChange={set} />
      <Charts key={`${scope.queue}/${scope.type}/${range}`} queue={scope.queue} type={scope.type} range={range} />
    </section>
  );
}

function Scope({ scope, range, onChange }: { scope: MetricsScope; range: RangeKey; onChange: (n: string, v: string) => void }) {
  const queues = useQueues();
  const types = useJobTypes();
  return (
    <div className="card filters filters__row" role="group" aria-label="Metrics scope">
      <label>Queue
        <select value={scope.queue} onChange={(e) => onChange("queue", e.target.value)}>
          <option value="">all queues</option>
          {(queues.data ?? []).map((q) => <option key={q.name}>{q.name}</option>)}
        </select>
      </label>
      <label>Job type
        <select value={scope.type} onChange={(e) => onChange("type", e.target.value)}>
          <option value="">any type</option>
          {(types.data ?? []).map((t) => <option key={t.name}>{t.name}</option>)}
        </select>
      </label>
      <div role="group" aria-label="Range" className="range-picker">
        {RANGE_KEYS.map((k) => (
          <button key={k} type="button" aria-pressed={k === range} onClick={() => onChange("range", k)}>
            {RANGES[k].label}
          </button>
        ))}
      </div>
    </div>
  );
}

/** The newest buckets, read again as events arrive (throttled), merged over the range. */
function useLiveTail(scope: MetricsScope, range: RangeKey, base: TimeBucket[] | undefined) {
  const { activity } = useLive();
  const events = useSyncExternalStore(activity.subscribe, activity.getSnapshot);
  const [tail, setTail] = useState<TimeBucket[]>([]);
  const last = useRef(0);
  useEffect(() => {
    if (!base || events.length === 0) return undefined;
    const read = () => {
      last.current = Date.now();
      const { interval, until } = rangeAt(range, Date.now());
      readSeries(scope, until - 2 * interval, until, interval)
        .then((s) => setTail((t) => mergeTail(t, s.series, RANGES[range].spanMs)))
        .catch(() => undefined);  // the next event tries again; the base stays on screen
    };
    const wait = Math.max(0, last.current + TAIL_EVERY_MS - Date.now());
    const timer = setTimeout(read, wait);
    return () => clearTimeout(timer);  // a read under way still lands: it is the newest
  }, [events, base, scope, range]);
  return useMemo(() => (base ? mergeTail(base, tail, RANGES[range].spanMs) : undefined), [base, tail, range]);
}

function Charts({ queue, type, range }: { queue: string; type: string; range: RangeKey }) {
  const scope = useMemo(() => ({ queue, type }), [queue, type]);
  const span = useMemo(() => rangeAt(range, Date.now()), [range]);
  const metrics = useMetrics(scope, range, () => span);
  const buckets = useLiveTail(scope, range, metrics.data?.series);
  return (
    <QueryState query={metrics} label="metrics">
      {() => <ChartGrid buckets={buckets ?? []} range={range} />}
    </QueryState>
  );
}

function ChartGrid({ buckets, range }: { buckets: TimeBucket[]; range: RangeKey }) {
  const perSecond = RANGES[range].intervalMs / 1000;
  const times = buckets.map((b) => b.start_ms);
  const pick = (f: (b: TimeBucket) => number | null | undefined) => buckets.map((b) => f(b) ?? 0);
  const tick = range === "7d" || range === "24h" ? formatDayTime : undefined;
  const completed = buckets.reduce((n, b) => n + b.completed, 0);
  const failed = buckets.reduce((n, b) => n + b.failed, 0);
  return (
    <div className="charts" data-testid="metrics-charts" data-buckets={buckets.length}>
      <p className="muted" data-testid="metrics-totals">
        {formatCount(completed)} completed and {formatCount(failed)} failed over {RANGES[range].label}, in buckets of {formatDuration(RANGES[range].intervalMs)}.
      </p>
      <LineChart testId="metrics-throughput" title="Throughput (jobs ended per second)" times={times} format={formatRate}
                 formatTick={tick}
                 series={[
                   { name: "completed", tone: "ok", values: pick((b) => b.completed / perSecond) },
                   { name: "failed", tone: "bad", values: pick((b) => b.failed / perSecond) },
                 ]} />
      <LineChart testId="metrics-runtime" title="Run time" times={times} format={formatDuration} formatTick={tick}
                 series={[
                   { name: "p50", tone: "ok", values: pick((b) => b.duration_p50) },
                   { name: "p95", tone: "info", values: pick((b) => b.duration_p95) },
                   { name: "p99", tone: "bad", values: pick((b) => b.duration_p99) },
                 ]} />
      <LineChart testId="metrics-pickup" title="Pickup delay (due to first start)" times={times} format={formatDuration}
                 formatTick={tick}
                 series={[
                   { name: "p50", tone: "ok", values: pick((b) => b.pickup_p50) },
                   { name: "p95", tone: "info", values: pick((b) => b.pickup_p95) },
                   { name: "p99", tone: "bad", values: pick((b) => b.pickup_p99) },
                 ]} />
    </div>
  );
}

function formatDayTime(ms: number): string {
  return new Date(ms).toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
}
