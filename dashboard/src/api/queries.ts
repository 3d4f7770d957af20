/** Reads: one hook per API resource, each under its key from queryKeys. */
import { keepPreviousData, useQuery } from "@tanstack/react-query";

import { api } from "../urls";
import { client, unwrap } from "./client";
import { queryKeys } from "./queryKeys";
import type { DeadFilter, JobSearch } from "./types";

/** Workers' heartbeats are not pushed over the WebSocket: their ages are re-read this often. */
export const WORKERS_REFRESH_MS = 5_000;

/** Counts by status and the queues now. The series part is kept to one bucket of a second:
 * the server scans the jobs of the window, and under load a minute's worth made every
 * refresh slow. */
export function useStats() {
  return useQuery({
    queryKey: queryKeys.stats,
    queryFn: ({ signal }) => {
      const until = Date.now();
      return unwrap(client.GET(api.stats, {
        params: { query: { since_ms: until - 1_000, until_ms: until, interval_ms: 1_000 } },
        signal,
      }));
    },
  });
}

/** The throughput history over [since, until), read once; live events extend it. */
export function useSeriesSeed(range: () => { since: number; until: number }, intervalMs: number) {
  return useQuery({
    queryKey: queryKeys.seriesSeed,
    queryFn: ({ signal }) => {
      const { since, until } = range();
      return unwrap(client.GET(api.stats, {
        params: { query: { since_ms: since, until_ms: until, interval_ms: intervalMs } },
        signal,
      }));
    },
    staleTime: Infinity,
  });
}

export function useQueues() {
  return useQuery({
    queryKey: queryKeys.queues,
    queryFn: ({ signal }) => unwrap(client.GET(api.queues, { signal })),
  });
}

export function useWorkers() {
  return useQuery({
    queryKey: queryKeys.workers,
    queryFn: ({ signal }) => unwrap(client.GET(api.workers, { signal })),
    refetchInterval: WORKERS_REFRESH_MS,
  });
}

export function useJobTypes() {
  return useQuery({
    queryKey: queryKeys.types,
    queryFn: ({ signal }) => unwrap(client.GET(api.types, { signal })),
    staleTime: 60_000,
  });
}

export function useJobs(search: JobSearch) {
  return useQuery({
    queryKey: queryKeys.jobs(search),
    queryFn: ({ signal }) => unwrap(client.GET(api.jobs, { params: { query: search }, signal })),
    placeholderData: keepPreviousData,
  });
}

export function useJob(id: string) {
  return useQuery({
    queryKey: queryKeys.job(id),
    queryFn: ({ signal }) =>
      unwrap(client.GET(api.job, { params: { path: { job_id: id } }, signal })),
  });
}

export function useDeadLetters(queue: string, offset: number, limit: number) {
  return useQuery({
    queryKey: queryKeys.dlq(queue, offset, limit),
    queryFn: ({ signal }) => unwrap(client.GET(api.dlq, {
      params: { path: { queue }, query: { offset, limit } }, signal,
    })),
    placeholderData: keepPreviousData,
    enabled: queue !== "",
  });
}

/** A queue's dead jobs that match a filter, read on the server (every page reachable). */
export function useDeadMatches(queue: string, filter: DeadFilter, offset: number, limit: number) {
  return useQuery({
    queryKey: queryKeys.dlqFind(queue, filter, offset),
    queryFn: ({ signal }) => unwrap(client.GET(api.dlqFind, {
      params: { path: { queue }, query: { ...filter, offset, limit } }, signal,
    })),
    placeholderData: keepPreviousData,
    enabled: queue !== "",
  });
}

/** A triage run's progress, polled while it runs. */
export const RUN_POLL_MS = 300;

export function useTriageRun(id: string | null) {
  return useQuery({
    queryKey: queryKeys.dlqRun(id ?? ""),
    queryFn: ({ signal }) => unwrap(client.GET(api.dlqRun, { params: { path: { run_id: id ?? "" } }, signal })),
    enabled: id !== null,
    refetchInterval: (q) => (q.state.data?.state === "running" || !q.state.data ? RUN_POLL_MS : false),
  });
}

/** Schedules carry next fire times and last runs that move with the clock: re-read often. */
export const SCHEDULES_REFRESH_MS = 5_000;

export function useSchedules() {
  return useQuery({
    queryKey: queryKeys.schedules,
    queryFn: ({ signal }) => unwrap(client.GET(api.schedules, { signal })),
    refetchInterval: SCHEDULES_REFRESH_MS,
  });
}

export function useDelayed(limit: number) {
  return useQuery({
    queryKey: queryKeys.delayed,
    queryFn: ({ signal }) => unwrap(client.GET(api.delayed, { params: { query: { limit } }, signal })),
    refetchInterval: SCHEDULES_REFRESH_MS,
  });
}

export type MetricsScope = { queue: string; type: string };

/** Buckets of ended jobs and their latencies over [since, until), of one queue and/or type. */
export function readSeries(scope: MetricsScope, since: number, until: number, interval: number, signal?: AbortSignal) {
  return unwrap(client.GET(api.stats, {
    params: { query: {
      since_ms: since, until_ms: until, interval_ms: interval,
      ...(scope.queue ? { queue: scope.queue } : {}), ...(scope.type ? { type: scope.type } : {}),
    } },
    signal,
  }));
}

export function useMetrics(scope: MetricsScope, range: string, window: () => { since: number; until: number; interval: number }) {
  return useQuery({
    queryKey: queryKeys.metrics(scope.queue, scope.type, range),
    queryFn: ({ signal }) => {
      const { since, until, interval } = window();
      return readSeries(scope, since, until, interval, signal);
    },
    staleTime: Infinity,
    placeholderData: keepPreviousData,
  });
}
