import { describe, expect, it } from "vitest";

import { paramsFromSearch, parseArgs, searchFromParams } from "./search";

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

describe("argument search in the URL", () => {
  it("keeps key=value pairs and the id prefix", () => {
    const search = searchFromParams(new URLSearchParams("arg=order_id=42&arg=junk&id_prefix=ab12"));
    expect(search.arg).toEqual(["order_id=42"]);
    expect(search.id_prefix).toBe("ab12");
    expect(paramsFromSearch(search).toString()).toBe("arg=order_id%3D42&id_prefix=ab12");
    expect(parseArgs(' order_id=42  name="x" nothing ')).toEqual(["order_id=42", 'name="x"']);
    expect(parseArgs("  ")).toBeUndefined();
  });
});
