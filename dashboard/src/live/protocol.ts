/**
 * The messages of the live-events WebSocket (/api/ws). The API's OpenAPI document does not
 * describe WebSockets, so these are written by hand from src/conveyor/api/wsproto.py.
 */
import type { JobStatus, Role } from "../api/types";

/** One transition of one job, or a queue's pause/resume (job ""), as the broker logged it. */
export type JobEvent = {
  type: "event";
  queue: string;
  /** The Redis stream entry id: the resume position in this queue. */
  id: string;
  job: string;
  event: string;
  status: JobStatus | "";
  seq: number;
  ts: number;
  job_type?: string;
  attempt?: number;
  worker?: string;
  progress?: string | number;
  message?: string;
  [field: string]: unknown;
};

export type ServerMessage =
  | { type: "authenticated"; role: Role }
  | { type: "subscribed"; cursor: Record<string, string> }
  | JobEvent
  | { type: "queue"; queue: string; id: string }
  | { type: "gap"; queue: string; after: string }
  | { type: "live" }
  | { type: "pong" }
  | { type: "error"; code: string; message: string; field: string | null };

export type Filter = { queues?: string[]; jobs?: string[]; types?: string[] };

export type ClientMessage =
  | { type: "auth"; key: string }
  | ({ type: "subscribe"; resume?: Record<string, string> } & Filter)
  | { type: "ping" };

/** Close codes the server uses (wsproto.py). */
export const CLOSE = { unauthorized: 4001, forbidden: 4003, tooSlow: 4008, rateLimited: 4029 } as const;

/** Events that end a job (the overview's throughput counts these). */
export const ENDED = { completed: "completed", dead: "dead", canceled: "canceled" } as const;
