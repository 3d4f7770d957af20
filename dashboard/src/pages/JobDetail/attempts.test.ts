import { describe, expect, it } from "vitest";

import { attemptView, currentError } from "./attempts";

const failed = (attempt: number, outcome = "retrying") => ({ attempt, outcome });

describe("attemptView", () => {
  it("reads plainly before any retry", () => {
    const job = { attempt: 2, max_attempts: 4, status: "active" as const, attempts: [failed(1), { attempt: 2, outcome: null }] };
    expect(attemptView(job).text).toBe("2 of 4");
  });

  it("counts attempts from the last retry", () => {
    const attempts = [failed(1), failed(2), failed(3), failed(4, "dead"), failed(5), failed(6, "dead"), { attempt: 7, outcome: null }];
    const job = { attempt: 7, max_attempts: 4, status: "active" as const, attempts };
    expect(attemptView(job)).toMatchObject({ retries: 2, attempt: 1, text: "retry 2, attempt 1 of 4" });
  });

  it("a dead job's last life is not a retry yet", () => {
    const attempts = [failed(1, "dead"), failed(2), failed(3, "dead")];
    const job = { attempt: 3, max_attempts: 2, status: "dead" as const, attempts };
    expect(attemptView(job).text).toBe("retry 1, attempt 2 of 2");
  });

  it("a retried job waiting for its first attempt", () => {
    const job = { attempt: 4, max_attempts: 4, status: "queued" as const, attempts: [failed(4, "dead")] };
    expect(attemptView(job).text).toBe("retry 1, no attempt yet (4 allowed)");
  });

  it("without history, assumes each life spent its budget", () => {
    const job = { attempt: 6, max_attempts: 4, status: "active" as const, attempts: [] };
    expect(attemptView(job).text).toBe("retry 1, attempt 2 of 4");
  });
});

describe("currentError", () => {
  it("hides a completed job's old error and marks a requeued job's as past", () => {
    expect(currentError({ status: "completed", error: "E: old" })).toBeNull();
    expect(currentError({ status: "queued", error: "E: old" })).toEqual({ error: "E: old", current: false });
    expect(currentError({ status: "dead", error: "E: now" })).toEqual({ error: "E: now", current: true });
  });
});
