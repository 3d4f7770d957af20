/**
 * The typed HTTP client (openapi-fetch over the generated schema) and the one error type every
 * failed call becomes. The API key is added to every request here, and nowhere else.
 */
import createClient, { type Middleware } from "openapi-fetch";

import { api } from "../urls";
import type { paths } from "./schema.gen";
import type { ErrorBody } from "./types";

/** A failed API call: the API's `{error: {code, message, field}}`, or a network failure (status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | null;

  constructor(status: number, body: Partial<ErrorBody>) {
    super(body.message ?? `the API answered ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code ?? "error";
    this.field = body.field ?? null;
  }

  get forbidden(): boolean {
    return this.status === 403;
  }
}

type Credentials = { key: string | null; onUnauthorized: () => void };

const credentials: Credentials = { key: null, onUnauthorized: () => undefined };

/** Called by the auth provider: the key to send, and what to do when the API says 401. */
export function setCredentials(key: string | null, onUnauthorized: () => void): void {
  credentials.key = key;
  credentials.onUnauthorized = onUnauthorized;
}

const auth: Middleware = {
  onRequest({ request }) {
    if (credentials.key) request.headers.set("Authorization", `Bearer ${credentials.key}`);
    return request;
  },
};

export const client = createClient<paths>({ baseUrl: "" });
client.use(auth);

type Outcome<T> = { data?: T; error?: unknown; response: Response };

/** The data of a call, or an ApiError (a 401 also signs the user out). */
export async function unwrap<T>(call: Promise<Outcome<T>>): Promise<T> {
  let outcome: Outcome<T>;
  try {
    outcome = await call;
  } catch (exc) {
    const reason = exc instanceof Error ? exc.message : String(exc);
    throw new ApiError(0, { code: "network", message: `cannot reach the API (${reason})` });
  }
  const { data, error, response } = outcome;
  if (response.ok) return data as T;
  const body = (error as { error?: Partial<ErrorBody> } | undefined)?.error ?? {};
  if (response.status === 401) credentials.onUnauthorized();
  throw new ApiError(response.status, body);
}

/** Checks a key without keeping it: any role may read the job-type catalog. */
export async function checkKey(key: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(api.types, { headers: { Authorization: `Bearer ${key}` } });
  } catch (exc) {
    const reason = exc instanceof Error ? exc.message : String(exc);
    throw new ApiError(0, { code: "network", message: `cannot reach the API (${reason})` });
  }
  if (response.ok) return;
  const body = (await response.json().catch(() => ({}))) as { error?: Partial<ErrorBody> };
  throw new ApiError(response.status, body.error ?? {});
}
