/** The inputs of a job type's arguments, generated from its JSON schema. */
import type { FieldSpec } from "./schema";

type Props = {
  fields: FieldSpec[];
  values: Record<string, string>;
  errors: Record<string, string>;
  onChange: (name: string, value: string) => void;
};

export function SchemaForm({ fields, values, errors, onChange }: Props) {
  if (fields.length === 0) return <p className="muted">This job type takes no arguments.</p>;
  return (
    <fieldset className="schema-form">
      <legend>Arguments</legend>
      {fields.map((f) => <Field key={f.name} field={f} value={values[f.name] ?? f.initial}
                                error={errors[`args.${f.name}`]} onChange={(v) => onChange(f.name, v)} />)}
    </fieldset>
  );
}

function Field({ field, value, error, onChange }: {
  field: FieldSpec; value: string; error: string | undefined; onChange: (v: string) => void;
}) {
  const id = `arg-${field.name}`;
  const hintId = field.description ? `${id}-hint` : undefined;
  const errorId = error ? `${id}-error` : undefined;
  const described = [hintId, errorId].filter(Boolean).join(" ") || undefined;
  const common = {
    id, name: field.name, "aria-invalid": error ? true : undefined, "aria-describedby": described,
    "aria-required": field.required || undefined,
  };
  let input;
  switch (field.kind) {
    case "boolean":
      input = <input type="checkbox" {...common} checked={value === "true"}
                     onChange={(e) => onChange(String(e.target.checked))} />;
      break;
    case "enum":
      input = (
        <select {...common} value={value} onChange={(e) => onChange(e.target.value)}>
          {!field.required && <option value="">(default)</option>}
          {field.options?.map((o) => <option key={o}>{o}</option>)}
        </select>
      );
      break;
    case "json":
      input = <textarea {...common} rows={4} spellCheck={false} value={value} onChange={(e) => onChange(e.target.value)} />;
      break;
    default:
      input = <input {...common} type={field.kind === "string" ? "text" : "number"}
                     step={field.kind === "integer" ? 1 : "any"} inputMode={field.kind === "string" ? undefined : "decimal"}
                     value={value} onChange={(e) => onChange(e.target.value)} />;
  }
  return (
    <div className={`field${error ? " field--invalid" : ""}`} data-field={`args.${field.name}`}>
      <label htmlFor={id}>{field.label}{field.required && <span aria-hidden="true"> *</span>}
        <span className="muted small"> {field.kind}</span></label>
      {input}
      {field.description && <p id={hintId} className="muted small">{field.description}</p>}
      {error && <p id={errorId} className="field-error" role="alert">{error}</p>}
    </div>
  );
}
