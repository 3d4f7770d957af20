/**
 * Overview: headline numbers, live charts of throughput and queue depth over the last 15
 * minutes (pushed over the WebSocket), and the latest events.
 */
import { useEffect, useSyncExternalStore } from "react";
import { Link } from "react-router";

import { useQueues, useSeriesSeed, useStats, useWorkers } from "../../api/queries";
import { Ago, useNow } from "../../components/Ago/Ago";
import { LineChart } from "../../components/LineChart/LineChart";
import { PausedQueues } from "../../components/PausedQueues/PausedQueues";
import { ErrorState } from "../../components/QueryState/QueryState";
import { StatCard } from "../../components/StatCard/StatCard";
import { StatusBadge } from "../../components/StatusBadge/StatusBadge";
import { formatCount, formatDuration, formatRate, shortId } from "../../format";
import { useLive, useSeriesVersion } from "../../live/LiveProvider";
import { BUCKET_MS, LiveSeries, WINDOW_MS } from "../../live/series";
import { links, routes } from "../../urls";

export function OverviewPage() {
  const stats = useStats();
  const queues = useQueues();
  const workers = useWorkers();
  const { series } = useLive();
  const seed = useSeriesSeed(() => LiveSeries.seedRange(Date.now()), BUCKET_MS);

  useEffect(() => {
    if (seed.data) series.seed(seed.data);
  }, [seed.data, series]);

  const counts = stats.data?.counts ?? {};
  const queueList = queues.data ?? [];
  const dead = queueList.reduce((n, q) => n + q.dead, 0);
  const waiting = queueList.reduce((n, q) => n + q.waiting, 0);
  const oldest = Math.max(-1, ...queueList.map((q) => q.oldest_waiting_seconds ?? -1));
  const alive = workers.data?.filter((w) => w.alive).length;
  const error = stats.error ?? queues.error ?? workers.error;
  // The numbers are as old as the older of the two reads they come from.
  const readAt = stats.dataUpdatedAt && queues.dataUpdatedAt
    ? Math.min(stats.dataUpdatedAt, queues.dataUpdatedAt) : null;

  return (
    <section aria-labelledby="overview-title">
      <h1 id="overview-title">Overview</h1>
      {error && <ErrorState error={error} label="some of the numbers" />}
      <PausedQueues queues={queueList} />
      <div className="cards">
        <StatCard testId="total-completed" label="Completed" value={formatCount(counts.completed)} />
        <StatCard testId="total-dead" label="Failed (dead)" value={formatCount(counts.dead)} />
        <StatCard testId="total-active" label="Running" value={formatCount(counts.active)} />
        <StatCard testId="total-waiting" label="Waiting" value={formatCount(queues.data ? waiting : null)}
                  hint={`${formatCount(counts.delayed)} delayed`} />
        <StatCard testId="workers-alive" label="Workers alive" value={formatCount(alive)}
                  hint={<Link to={routes.workers}>Workers</Link>} />
        <StatCard testId="dlq-size" label="Dead-letter queues" value={formatCount(queues.data ? dead : null)}
                  hint={<Link to={links.deadLetters()}>Dead letters</Link>} />
        <StatCard testId="oldest-waiting" label="Oldest waiting job"
                  value={oldest < 0 ? "none" : formatDuration(oldest * 1000)} />
      </div>
      <p className="muted small" data-testid="data-age" data-read-at={readAt ?? undefined}>
        Numbers read <Ago ms={readAt} />; they are read again as live events say they changed.
      </p>
      <Charts series={series} seeded={seed.isSuccess} />
      <ActivityList />
    </section>
  );
}

function Charts({ series, seeded }: { series: LiveSeries; seeded: boolean }) {
  useSeriesVersion(series);
  const now = useNow();
  const throughput = series.throughput(now);
  const depth = series.depthSeries(now);
  return (
    <div className="charts" data-seeded={seeded}>
      <LineChart testId="chart-throughput" title="Jobs ended per second (last 15 minutes)"
                 times={throughput.map((p) => p.t)} format={formatRate}
                 series={[
                   { name: "completed", tone: "ok", values: throughput.map((p) => p.completed) },
                   { name: "failed", tone: "bad", values: throughput.map((p) => p.failed) },
                 ]} />
      <LineChart testId="chart-depth" title="Queue depth (all queues, since the dashboard opened)"
                 times={depth.map((p) => p.t)} format={formatCount} integer
                 domain={[throughput[0]?.t ?? now - WINDOW_MS, now]}
                 series={[
                   { name: "waiting", tone: "info", values: depth.map((p) => p.waiting) },
                   { name: "active", tone: "ok", values: depth.map((p) => p.active) },
                   { name: "delayed", tone: "muted", values: depth.map((p) => p.delayed) },
                 ]} />
      <p className="muted small" data-testid="ended-live">
        {formatCount(series.endedLive)} jobs ended since the dashboard opened (counted from live events).
      </p>
    </div>
  );
}

function ActivityList() {
  const { activity } = useLive();
  const events = useSyncExternalStore(activity.subscribe, activity.getSnapshot);
  return (
    <section className="card" aria-labelledby="activity-title">
      <h2 id="activity-title">Latest events</h2>
      {events.length === 0 ? <p className="state state--empty">No events yet: they appear here as they happen.</p> : (
        <ol className="activity" data-testid="activity">
          {events.map((e) => (
            <li key={`${e.queue}/${e.id}`} data-job={e.job} data-event={e.event}>
              <time dateTime={new Date(e.ts).toISOString()}>{new Date(e.ts).toLocaleTimeString()}</time>
              <StatusBadge status={e.event} />
              {e.job ? <Link to={links.job(e.job)}>{shortId(e.job)}</Link> : <span>queue {e.queue}</span>}
              <span className="muted">{e.job_type ?? ""}</span>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
