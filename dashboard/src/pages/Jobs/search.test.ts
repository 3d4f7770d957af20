import { describe, expect, it } from "vitest";

import { paramsFromSearch, searchFromParams } from "./search";

describe("jobs search in the URL", () => {
  it("round-trips and drops defaults and unknown values", () => {
    const search = searchFromParams(new URLSearchParams(
      "status=dead&status=bogus&type=demo.fast&limit=25&order=asc&sort=finished_ms&since_ms=10"));
    expect(search).toMatchObject({ status: ["dead"], type: "demo.fast", limit: 25, order: "asc",
      sort: "finished_ms", since_ms: 10 });
    expect(paramsFromSearch(search).toString())
      .toBe("status=dead&type=demo.fast&since_ms=10&sort=finished_ms&order=asc&limit=25");
    expect(paramsFromSearch(searchFromParams(new URLSearchParams("limit=7"))).toString()).toBe("");
  });
});
