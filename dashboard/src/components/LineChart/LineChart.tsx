/**
 * A small SVG line chart over time (no chart library: the dashboard stays light). Each series
 * has a legend entry with its latest value; the chart has a text alternative. The SVG is drawn
 * at its real width in pixels (never scaled), so labels keep their 11 px on a phone, and the
 * left margin grows with the widest axis label, so "1,000/s" is never clipped.
 */
import { type RefObject, useEffect, useRef, useState } from "react";

import { formatClock } from "../../format";

export type ChartSeries = { name: string; tone: "ok" | "bad" | "info" | "muted"; values: number[] };

type Props = {
  title: string;
  times: number[];
  series: ChartSeries[];
  format: (value: number) => string;
  /** The time axis (default: the first and last time). */
  domain?: [number, number];
  /** Whole numbers only: the axis never shows halves. */
  integer?: boolean;
  testId?: string;
  /** How the time axis reads (default: the clock, HH:MM). */
  formatTick?: (ms: number) => string;
};

const DEFAULT_W = 640;
const H = 200;
const PAD = { right: 12, top: 10, bottom: 24 };
/** Axis label width per character at 11 px, generous for digits, separators and units. */
const CHAR_PX = 7;

/** The element's content width, followed as it resizes. */
function useWidth<E extends HTMLElement>(): [RefObject<E | null>, number] {
  const ref = useRef<E>(null);
  const [width, setWidth] = useState(DEFAULT_W);
  useEffect(() => {
    const el = ref.current;
    if (!el) return undefined;
    const measure = () => setWidth(Math.max(120, Math.floor(el.clientWidth)));
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

function niceMax(value: number): number {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 2.5, 5, 10].find((s) => s * magnitude >= value) ?? 10;
  return step * magnitude;
}

export function LineChart({ title, times, series, format, domain, integer, testId, formatTick = formatClock }: Props) {
  const [box, W] = useWidth<HTMLDivElement>();
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const max = integer ? Math.max(2, Math.ceil(top / 2) * 2) : top;
  const t0 = domain?.[0] ?? times[0] ?? 0;
  const t1 = domain?.[1] ?? times[times.length - 1] ?? t0 + 1;
  const labels = [0, 0.5, 1].map((f) => format(max * f));
  const left = 10 + CHAR_PX * Math.max(...labels.map((l) => l.length));
  const pad = { ...PAD, left };
  const x = (t: number) => pad.left + ((t - t0) / Math.max(1, t1 - t0)) * (W - pad.left - pad.right);
  const y = (v: number) => H - pad.bottom - (v / max) * (H - pad.top - pad.bottom);
  const latest = series.map((s) => ({ name: s.name, value: s.values[s.values.length - 1] ?? 0 }));
  const summary = latest.map((l) => `${l.name} ${format(l.value)}`).join(", ");

  return (
    <figure className="card chart" data-testid={testId}
            data-latest={JSON.stringify(Object.fromEntries(latest.map((l) => [l.name, l.value])))}>
      <figcaption className="chart__title">{title}</figcaption>
      <div ref={box} className="chart__box">
      <svg viewBox={`0 0 ${W} ${H}`} width={W} height={H} role="img" aria-label={`${title}: now ${summary}`}>
        {[0, 0.5, 1].map((f, i) => (
          <g key={f} className="chart__grid">
            <line x1={pad.left} x2={W - pad.right} y1={y(max * f)} y2={y(max * f)} />
            <text x={pad.left - 6} y={y(max * f) + 4} textAnchor="end">{labels[i]}</text>
          </g>
        ))}
        {t1 > t0 && [t0, (t0 + t1) / 2, t1].map((t, i) => (
          <text key={t} className="chart__axis" x={x(t)} y={H - 6}
                textAnchor={i === 0 ? "start" : i === 2 ? "end" : "middle"}>{formatTick(t)}</text>
        ))}
        {series.map((s) => (
          <polyline key={s.name} className={`chart__line chart__line--${s.tone}`} fill="none"
                    points={s.values.map((v, i) => `${x(times[i] ?? t0).toFixed(1)},${y(v).toFixed(1)}`).join(" ")} />
        ))}
      </svg>
      </div>
      <ul className="chart__legend">
        {latest.map((l, i) => (
          <li key={l.name}>
            <span className={`swatch swatch--${series[i]?.tone ?? "muted"}`} aria-hidden="true" />
            {l.name}: <strong>{format(l.value)}</strong>
          </li>
        ))}
      </ul>
    </figure>
  );
}
