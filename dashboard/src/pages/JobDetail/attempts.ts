/**
 * How a job's attempt reads after retries. A retry from the dead-letter queue (or of a canceled
 * job) gives a fresh attempt budget, but the attempt counter keeps counting, so "attempt 6 of 4"
 * must read "retry 1, attempt 2 of 4". Lives are told apart by the attempts that ended dead or
 * canceled; without that history the budget is assumed spent each time.
 */
import type { Attempt, Job } from "../../api/types";

export type AttemptView = { retries: number; attempt: number; max: number | null; text: string };

const ENDS_A_LIFE = new Set(["dead", "canceled"]);

export function attemptView(job: Pick<Job, "attempt" | "max_attempts" | "status"> & { attempts: Pick<Attempt, "attempt" | "outcome">[] }): AttemptView {
  const max = job.max_attempts ?? null;
  const ends = job.attempts.filter((a) => ENDS_A_LIFE.has(a.outcome ?? "")).map((a) => a.attempt).sort((a, b) => a - b);
  let retries: number;
  let start: number;
  if (ends.length > 0) {
    const ended = ENDS_A_LIFE.has(job.status) && ends[ends.length - 1] === job.attempt;
    const previous = ended ? ends.slice(0, -1) : ends;
    retries = previous.length;
    start = previous[previous.length - 1] ?? 0;
  } else if (max !== null && job.attempt > max) {
    retries = Math.floor((job.attempt - 1) / max);
    start = retries * max;
  } else {
    retries = 0;
    start = 0;
  }
  const attempt = job.attempt - start;
  return { retries, attempt, max, text: describe(retries, attempt, max) };
}

function describe(retries: number, attempt: number, max: number | null): string {
  const of = max !== null ? ` of ${max}` : "";
  const current = attempt > 0 ? `attempt ${attempt}${of}` : `no attempt yet${max !== null ? ` (${max} allowed)` : ""}`;
  if (retries === 0) return attempt > 0 ? `${attempt}${of}` : "none yet";
  return `retry ${retries}, ${current}`;
}

/** The error to show as the job's current one: none once it completed or runs again. */
export function currentError(job: Pick<Job, "status" | "error">): { error: string; current: boolean } | null {
  if (!job.error || job.status === "completed") return null;
  return { error: job.error, current: job.status === "dead" || job.status === "retrying" };
}
