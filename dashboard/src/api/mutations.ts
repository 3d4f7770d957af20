/** Writes: one hook per action; each refreshes what it changed (the WebSocket confirms it). */
import { useMutation, useQueryClient, type QueryKey } from "@tanstack/react-query";

import { api } from "../urls";
import { client, unwrap } from "./client";
import { queryKeys } from "./queryKeys";
import type { components } from "./schema.gen";
import type { DeadFilter, DlqSelection, JobSubmission } from "./types";

type Schemas = components["schemas"];

function useInvalidating<V, R>(action: (vars: V) => Promise<R>, keys: (vars: V) => QueryKey[]) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: action,
    onSettled: (_data, _error, vars) =>
      Promise.all(keys(vars).map((queryKey) => queryClient.invalidateQueries({ queryKey }))),
  });
}

const jobKeys = (id: string): QueryKey[] =>
  [queryKeys.job(id), queryKeys.jobsRoot, queryKeys.queues, queryKeys.dlqRoot, queryKeys.stats];

export function useCancelJob() {
  return useInvalidating(
    (id: string) => unwrap(client.POST(api.cancelJob, { params: { path: { job_id: id } } })),
    jobKeys);
}

export function useRetryJob() {
  return useInvalidating(
    (id: string) => unwrap(client.POST(api.retryJob, { params: { path: { job_id: id } } })),
    jobKeys);
}

export function useDeleteJob() {
  return useInvalidating(
    (id: string) => unwrap(client.DELETE(api.job, { params: { path: { job_id: id } } })),
    jobKeys);
}

export function usePauseQueue() {
  return useInvalidating(
    ({ queue, pause }: { queue: string; pause: boolean }) =>
      unwrap(client.POST(pause ? api.pauseQueue : api.resumeQueue, { params: { path: { queue } } })),
    () => [queryKeys.queues, queryKeys.stats]);
}

export type DlqAction = { queue: string; action: "retry" | "purge"; ids: string[] | "all" };

export function useDlqAction() {
  return useInvalidating(
    ({ queue, action, ids }: DlqAction) =>
      unwrap(client.POST(action === "retry" ? api.dlqRetry : api.dlqPurge, {
        params: { path: { queue } },
        body: selection(ids),
      })),
    ({ queue }) => [queryKeys.dlqOf(queue), queryKeys.queues, queryKeys.jobsRoot, queryKeys.stats]);
}

/** The bodies may leave defaulted fields out (see types.ts): the casts say only that. */
function selection(ids: string[] | "all"): Schemas["DlqSelection"] {
  const body: DlqSelection = ids === "all" ? { all: true } : { ids };
  return body as Schemas["DlqSelection"];
}

export function useSubmitJob() {
  return useInvalidating(
    (submission: JobSubmission) =>
      unwrap(client.POST(api.jobs, { body: submission as Schemas["JobSubmission"] })),
    () => [queryKeys.jobsRoot, queryKeys.queues, queryKeys.stats]);
}

export type TriageAction = { queue: string; action: "retry" | "purge"; filter: DeadFilter };

/** Starts a run over every dead job matching the filter; its progress is useTriageRun's. */
export function useTriage() {
  return useInvalidating(
    ({ queue, action, filter }: TriageAction) =>
      unwrap(client.POST(action === "retry" ? api.dlqTriageRetry : api.dlqTriagePurge, {
        params: { path: { queue } },
        body: { filter: filter as Schemas["DeadFilter"] } as Schemas["DlqTriage"],
      })),
    ({ queue }) => [queryKeys.dlqOf(queue), queryKeys.queues]);
}

const scheduleKeys = (): QueryKey[] => [queryKeys.schedules, queryKeys.delayed, queryKeys.jobsRoot, queryKeys.queues];

export type ScheduleAction = { name: string; action: "pause" | "resume" | "run" | "delete" };

export function useScheduleAction() {
  return useInvalidating(({ name, action }: ScheduleAction) => {
    const path = { params: { path: { name } } };
    if (action === "delete") return unwrap(client.DELETE(api.schedule, path));
    const url = { pause: api.pauseSchedule, resume: api.resumeSchedule, run: api.runSchedule }[action];
    return unwrap(client.POST(url, path));
  }, scheduleKeys);
}

export function useRunDelayed() {
  return useInvalidating(
    (id: string) => unwrap(client.POST(api.runDelayed, { params: { path: { job_id: id } } })),
    scheduleKeys);
}

/** Quiet a worker (it claims nothing new and finishes its jobs), or resume it. */
export function useQuietWorker() {
  return useInvalidating(
    ({ id, quiet }: { id: string; quiet: boolean }) =>
      unwrap(client.POST(quiet ? api.quietWorker : api.resumeWorker, { params: { path: { worker_id: id } } })),
    () => [queryKeys.workers]);
}
