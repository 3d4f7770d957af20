import { describe, expect, it } from "vitest";

import { argsOf, fieldOfError, fieldsOf } from "./schema";

const schema = {
  type: "object",
  required: ["n", "name"],
  properties: {
    n: { type: "integer", title: "N" },
    name: { type: "string" },
    ratio: { anyOf: [{ type: "number" }, { type: "null" }], default: 0.5 },
    mode: { enum: ["fast", "slow"] },
    loud: { type: "boolean" },
    tags: { type: "array", items: { type: "string" } },
  },
};

describe("fieldsOf", () => {
  it("gives each argument an input kind", () => {
    const fields = fieldsOf(schema);
    expect(fields.map((f) => [f.name, f.kind, f.required])).toEqual([
      ["n", "integer", true], ["name", "string", true], ["ratio", "number", false],
      ["mode", "enum", false], ["loud", "boolean", false], ["tags", "json", false],
    ]);
    expect(fields[2]?.initial).toBe("0.5");
  });
});

describe("argsOf", () => {
  it("types values, leaves blanks out and passes non-numbers on for the API to judge", () => {
    const fields = fieldsOf(schema);
    const { args, invalid } = argsOf(fields, { n: "1.5", name: "", tags: '["a"]', loud: "true" });
    expect(args).toEqual({ n: 1.5, ratio: 0.5, loud: true, tags: ["a"] });
    expect(invalid).toEqual({});
    expect(argsOf(fields, { tags: "[" }).invalid).toEqual({ tags: "Not valid JSON." });
  });
});

describe("fieldOfError", () => {
  it("maps the API's error paths to inputs", () => {
    expect(fieldOfError("args.n")).toBe("args.n");
    expect(fieldOfError("args.size.w")).toBe("args.size");
    expect(fieldOfError("args.tags[2]")).toBe("args.tags");
    expect(fieldOfError("priority")).toBe("priority");
    expect(fieldOfError(null)).toBeNull();
  });
});
