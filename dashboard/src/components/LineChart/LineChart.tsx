/**
 * A small SVG line chart over time (no chart library: the dashboard stays light). Each series
 * has a legend entry with its latest value; the chart has a text alternative.
 */
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
};

const W = 640;
const H = 200;
const PAD = { left: 44, right: 8, top: 10, bottom: 24 };

function niceMax(value: number): number {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 2.5, 5, 10].find((s) => s * magnitude >= value) ?? 10;
  return step * magnitude;
}

export function LineChart({ title, times, series, format, domain, integer, testId }: Props) {
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const max = integer ? Math.max(2, Math.ceil(top / 2) * 2) : top;
  const t0 = domain?.[0] ?? times[0] ?? 0;
  const t1 = domain?.[1] ?? times[times.length - 1] ?? t0 + 1;
  const x = (t: number) => PAD.left + ((t - t0) / Math.max(1, t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const latest = series.map((s) => ({ name: s.name, value: s.values[s.values.length - 1] ?? 0 }));
  const summary = latest.map((l) => `${l.name} ${format(l.value)}`).join(", ");

  return (
    <figure className="card chart" data-testid={testId}
            data-latest={JSON.stringify(Object.fromEntries(latest.map((l) => [l.name, l.value])))}>
      <figcaption className="chart__title">{title}</figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title}: now ${summary}`}>
        {[0, 0.5, 1].map((f) => (
          <g key={f} className="chart__grid">
            <line x1={PAD.left} x2={W - PAD.right} y1={y(max * f)} y2={y(max * f)} />
            <text x={PAD.left - 6} y={y(max * f) + 4} textAnchor="end">{format(max * f)}</text>
          </g>
        ))}
        {t1 > t0 && [t0, (t0 + t1) / 2, t1].map((t, i) => (
          <text key={t} className="chart__axis" x={x(t)} y={H - 6}
                textAnchor={i === 0 ? "start" : i === 2 ? "end" : "middle"}>{formatClock(t)}</text>
        ))}
        {series.map((s) => (
          <polyline key={s.name} className={`chart__line chart__line--${s.tone}`} fill="none"
                    points={s.values.map((v, i) => `${x(times[i] ?? t0).toFixed(1)},${y(v).toFixed(1)}`).join(" ")} />
        ))}
      </svg>
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
