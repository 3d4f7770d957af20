/**
 * Form fields from a job type's JSON schema (as the catalog serves it: a pydantic model's
 * schema, an object of named arguments). Simple types get their own input; anything else is
 * edited as JSON. Values are sent as typed, without client-side checks: the API validates and
 * its errors are shown next to the fields they name.
 */

export type FieldKind = "string" | "integer" | "number" | "boolean" | "enum" | "json";

export type FieldSpec = {
  name: string;
  label: string;
  kind: FieldKind;
  required: boolean;
  description?: string;
  options?: string[];
  initial: string;
};

type Schema = {
  type?: string | string[];
  title?: string;
  description?: string;
  enum?: unknown[];
  default?: unknown;
  anyOf?: Schema[];
  oneOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
};

/** The one non-null alternative of `X | None`, or the schema itself. */
function unwrapNullable(schema: Schema): Schema {
  const options = schema.anyOf ?? schema.oneOf;
  if (!options) return schema;
  const real = options.filter((s) => s.type !== "null");
  return real.length === 1 && real[0] ? { ...real[0], ...pick(schema) } : schema;
}

function pick(schema: Schema): Schema {
  const out: Schema = {};
  if (schema.title !== undefined) out.title = schema.title;
  if (schema.description !== undefined) out.description = schema.description;
  if (schema.default !== undefined) out.default = schema.default;
  return out;
}

function kindOf(schema: Schema): FieldKind {
  if (Array.isArray(schema.enum) && schema.enum.every((v) => typeof v === "string")) return "enum";
  switch (schema.type) {
    case "string": return "string";
    case "integer": return "integer";
    case "number": return "number";
    case "boolean": return "boolean";
    default: return "json";
  }
}

function initialOf(kind: FieldKind, value: unknown): string {
  if (value === undefined) return kind === "boolean" ? "false" : "";
  if (kind === "json") return JSON.stringify(value, null, 2);
  return String(value);
}

export function fieldsOf(schema: Record<string, unknown>): FieldSpec[] {
  const root = schema as Schema;
  const required = new Set(root.required ?? []);
  return Object.entries(root.properties ?? {}).map(([name, raw]) => {
    const s = unwrapNullable(raw);
    const kind = kindOf(s);
    const spec: FieldSpec = {
      name, label: s.title ?? name, kind, required: required.has(name), initial: initialOf(kind, s.default),
    };
    if (s.description) spec.description = s.description;
    if (kind === "enum") spec.options = (s.enum ?? []).map(String);
    return spec;
  });
}

/** The arguments to send, and the fields whose text is not even JSON (those are not sent). */
export function argsOf(fields: FieldSpec[], values: Record<string, string>): {
  args: Record<string, unknown>; invalid: Record<string, string>;
} {
  const args: Record<string, unknown> = {};
  const invalid: Record<string, string> = {};
  for (const f of fields) {
    const raw = values[f.name] ?? f.initial;
    if (f.kind === "boolean") {
      args[f.name] = raw === "true";
      continue;
    }
    if (raw.trim() === "") continue;  // left out: the API says whether it is required
    if (f.kind === "integer" || f.kind === "number") {
      const n = Number(raw);
      args[f.name] = Number.isFinite(n) ? n : raw;  // not a number: let the API say so
    } else if (f.kind === "json") {
      try {
        args[f.name] = JSON.parse(raw) as unknown;
      } catch {
        invalid[f.name] = "Not valid JSON.";
      }
    } else {
      args[f.name] = raw;
    }
  }
  return { args, invalid };
}

/**
 * Which input an API error's `field` belongs to: "args.width" and "args.size.w" to the
 * argument "width" / "size" (as "args.width" / "args.size"), top-level fields to themselves.
 */
export function fieldOfError(field: string | null): string | null {
  if (!field) return null;
  const parts = field.split(/[.[]/);
  if (parts[0] === "args" && parts.length > 1) return `args.${parts[1]}`;
  return parts[0] ?? null;
}
