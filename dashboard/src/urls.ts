/**
 * Every URL the dashboard knows: the API's paths (for the typed client and the WebSocket) and
 * the dashboard's own routes. Nothing else in the app spells a path.
 */

/** API paths, as the OpenAPI schema names them (the typed client checks them). */
export const api = {
  jobs: "/api/jobs",
  job: "/api/jobs/{job_id}",
  cancelJob: "/api/jobs/{job_id}/cancel",
  retryJob: "/api/jobs/{job_id}/retry",
  queues: "/api/queues",
  pauseQueue: "/api/queues/{queue}/pause",
  resumeQueue: "/api/queues/{queue}/resume",
  dlq: "/api/queues/{queue}/dlq",
  dlqRetry: "/api/queues/{queue}/dlq/retry",
  dlqPurge: "/api/queues/{queue}/dlq/purge",
  dlqFind: "/api/dlq/{queue}",
  dlqTriageRetry: "/api/dlq/{queue}/retry",
  dlqTriagePurge: "/api/dlq/{queue}/purge",
  dlqRun: "/api/dlq/runs/{run_id}",
  schedules: "/api/schedules",
  schedule: "/api/schedules/{name}",
  pauseSchedule: "/api/schedules/{name}/pause",
  resumeSchedule: "/api/schedules/{name}/resume",
  runSchedule: "/api/schedules/{name}/run",
  delayed: "/api/delayed",
  runDelayed: "/api/delayed/{job_id}/run",
  workers: "/api/workers",
  quietWorker: "/api/workers/{worker_id}/quiet",
  resumeWorker: "/api/workers/{worker_id}/resume",
  types: "/api/types",
  stats: "/api/stats",
  docs: "/docs",
} as const;

/** The live-events WebSocket, on the host that served the dashboard. */
export function eventsSocketUrl(location: Location = window.location): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/ws`;
}

/** The dashboard's pages (React Router patterns and link builders). */
export const routes = {
  login: "/login",
  overview: "/",
  queues: "/queues",
  jobs: "/jobs",
  job: "/jobs/:jobId",
  deadLetters: "/dead-letters",
  deadLettersOf: "/dead-letters/:queue",
  workers: "/workers",
  schedules: "/schedules",
  metrics: "/charts",
  submit: "/submit",
} as const;

export const links = {
  job: (id: string): string => `/jobs/${encodeURIComponent(id)}`,
  deadLetters: (queue?: string): string =>
    queue ? `/dead-letters/${encodeURIComponent(queue)}` : "/dead-letters",
  jobs: (filters: Record<string, string | string[] | undefined> = {}): string => {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(filters)) {
      for (const v of Array.isArray(value) ? value : value ? [value] : []) params.append(name, v);
    }
    const query = params.toString();
    return query ? `/jobs?${query}` : "/jobs";
  },
  submit: (type?: string): string => (type ? `/submit?type=${encodeURIComponent(type)}` : "/submit"),
} as const;
