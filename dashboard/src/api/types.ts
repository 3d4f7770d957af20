/** Short names for the API's schemas (generated into schema.gen.ts from the OpenAPI document). */
import type { components } from "./schema.gen";

type Schemas = components["schemas"];

export type Job = Schemas["JobOut"];
export type Attempt = Schemas["AttemptOut"];
export type JobPage = Schemas["JobPageOut"];
export type JobStatus = Schemas["Status"];
/**
 * Request bodies: the generator marks fields that have a default as required (right for the
 * API's answers, which always carry them); a request may leave them out.
 */
type Body<T, K extends keyof T> = Pick<T, K> & Partial<Omit<T, K>>;
export type JobSubmission = Body<Schemas["JobSubmission"], "type">;
export type DlqSelection = Body<Schemas["DlqSelection"], never>;
export type SubmittedJob = Schemas["SubmittedJob"];
export type Queue = Schemas["QueueOut"];
export type DlqPage = Schemas["DlqPage"];
export type DlqResult = Schemas["DlqResult"];
export type Worker = Schemas["WorkerOut"];
export type JobType = Schemas["JobTypeOut"];
export type Stats = Schemas["StatsOut"];
export type TimeBucket = Schemas["TimeBucket"];
export type ErrorBody = Schemas["ErrorBody"];
export type SortField = NonNullable<JobSearch["sort"]>;

/** The query of GET /api/jobs. */
export type JobSearch = {
  status?: JobStatus[];
  queue?: string;
  type?: string;
  text?: string;
  since_ms?: number;
  until_ms?: number;
  sort?: "submitted_ms" | "updated_ms" | "finished_ms";
  order?: "asc" | "desc";
  limit?: number;
  cursor?: string;
  /** Equality on top-level arguments, each "key=value" (a bounded scan on the server). */
  arg?: string[];
  id_prefix?: string;
};

export const JOB_STATUSES: readonly JobStatus[] = [
  "delayed", "queued", "active", "retrying", "completed", "dead", "canceled",
];

/** Statuses a job does not leave by itself. */
export const TERMINAL: ReadonlySet<JobStatus> = new Set(["completed", "dead", "canceled"]);

/** One running job in a worker's heartbeat (the API types it as a free-form object). */
export type CurrentJob = { id: string; queue?: string; type?: string; attempt?: number; started?: number };

export type DeadFilter = Body<Schemas["DeadFilter"], never>;
export type DeadMatches = Schemas["DeadMatches"];
export type TriageRun = Schemas["TriageRun"];
export type Schedule = Schemas["ScheduleOut"];
export type DelayedPage = Schemas["DelayedPage"];

export type Role = "admin" | "producer" | "viewer";
