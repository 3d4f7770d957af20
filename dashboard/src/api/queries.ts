/** Reads: one hook per API resource, each under its key from queryKeys. */
import { keepPreviousData, useQuery } from "@tanstack/react-query";

import { api } from "../urls";
import { client, unwrap } from "./client";
import { queryKeys } from "./queryKeys";
import type { JobSearch } from "./types";

/** Workers' heartbeats are not pushed over the WebSocket: their ages are re-read this often. */
export const WORKERS_REFRESH_MS = 5_000;

/** Counts by status and the queues now (the series part is kept to one small bucket). */
export function useStats() {
  return useQuery({
    queryKey: queryKeys.stats,
    queryFn: ({ signal }) => {
      const until = Date.now();
      return unwrap(client.GET(api.stats, {
        params: { query: { since_ms: until - 60_000, until_ms: until, interval_ms: 60_000 } },
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
