/**
 * Submit: pick a job type from the catalog; its argument schema becomes the form. The API
 * validates, and each error it names is shown next to its field.
 */
import { useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router";

import { ApiError } from "../../api/client";
import { useSubmitJob } from "../../api/mutations";
import { useJobTypes } from "../../api/queries";
import type { JobSubmission, JobType } from "../../api/types";
import { QueryState, describeError } from "../../components/QueryState/QueryState";
import { argsOf, fieldOfError, fieldsOf } from "../../components/SchemaForm/schema";
import { SchemaForm } from "../../components/SchemaForm/SchemaForm";
import { links } from "../../urls";

export function SubmitPage() {
  const types = useJobTypes();
  const [params, setParams] = useSearchParams();
  return (
    <section aria-labelledby="submit-title">
      <h1 id="submit-title">Submit a job</h1>
      <QueryState query={types} label="job types" isEmpty={(t) => t.length === 0}
                  empty="No job type is registered: start a worker or an app that defines jobs.">
        {(data) => {
          const chosen = data.find((t) => t.name === params.get("type")) ?? data[0];
          if (!chosen) return null;
          return (
            <>
              <div className="picker">
                <label>Job type
                  <select value={chosen.name} onChange={(e) => setParams({ type: e.target.value })}>
                    {data.map((t) => <option key={t.name}>{t.name}</option>)}
                  </select>
                </label>
              </div>
              <SubmitForm key={chosen.name} type={chosen} />
            </>
          );
        }}
      </QueryState>
    </section>
  );
}

type Options = { queue: string; priority: string; delay: string; max_attempts: string };

function submissionOf(type: JobType, args: Record<string, unknown>, o: Options): JobSubmission {
  const body: JobSubmission = { type: type.name, args };
  if (o.queue.trim()) body.queue = o.queue.trim();
  if (o.priority) body.priority = o.priority as NonNullable<JobSubmission["priority"]>;
  const number = (v: string) => (Number.isFinite(Number(v)) ? Number(v) : (v as unknown as number));
  if (o.delay.trim()) body.delay = number(o.delay);
  if (o.max_attempts.trim()) body.max_attempts = number(o.max_attempts);
  return body;
}

function SubmitForm({ type }: { type: JobType }) {
  const fields = fieldsOf(type.args_schema ?? {});
  const [values, setValues] = useState<Record<string, string>>({});
  const [options, setOptions] = useState<Options>({ queue: "", priority: "", delay: "", max_attempts: "" });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [submitted, setSubmitted] = useState<string[]>([]);
  const submit = useSubmitJob();

  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    const { args, invalid } = argsOf(fields, values);
    const clientErrors = Object.fromEntries(Object.entries(invalid).map(([k, v]) => [`args.${k}`, v]));
    setErrors(clientErrors);
    setFormError(null);
    if (Object.keys(clientErrors).length > 0) return;
    submit.mutate(submissionOf(type, args, options), {
      onSuccess: (job) => setSubmitted((list) => [job.id, ...list].slice(0, 10)),
      onError: (error) => {
        const target = error instanceof ApiError ? fieldOfError(error.field) : null;
        const known = target !== null && (target.startsWith("args.")
          ? fields.some((f) => `args.${f.name}` === target) : target in options);
        if (known) setErrors({ [target]: error.message });
        else setFormError(describeError(error));
      },
    });
  };
  const option = (name: keyof Options) => ({
    id: `opt-${name}`, value: options[name],
    "aria-invalid": errors[name] ? true : undefined,
    "aria-describedby": errors[name] ? `opt-${name}-error` : undefined,
    onChange: (e: { target: { value: string } }) => setOptions({ ...options, [name]: e.target.value }),
  });
  const optionError = (name: keyof Options) => errors[name] &&
    <p id={`opt-${name}-error`} className="field-error" role="alert">{errors[name]}</p>;

  return (
    <form className="card submit-form" onSubmit={onSubmit} noValidate aria-label={`Submit ${type.name}`}>
      {type.doc && <p className="muted">{type.doc}</p>}
      <SchemaForm fields={fields} values={values} errors={errors}
                  onChange={(name, v) => setValues({ ...values, [name]: v })} />
      <fieldset className="schema-form">
        <legend>Options</legend>
        <div className={`field${errors.queue ? " field--invalid" : ""}`}>
          <label htmlFor="opt-queue">Queue</label>
          <input type="text" placeholder={type.queue} {...option("queue")} />
          {optionError("queue")}
        </div>
        <div className={`field${errors.priority ? " field--invalid" : ""}`}>
          <label htmlFor="opt-priority">Priority</label>
          <select {...option("priority")}>
            <option value="">default ({type.priority})</option>
            <option>high</option><option>normal</option><option>low</option>
          </select>
          {optionError("priority")}
        </div>
        <div className={`field${errors.delay ? " field--invalid" : ""}`}>
          <label htmlFor="opt-delay">Delay (seconds)</label>
          <input type="number" min={0} step="any" {...option("delay")} />
          {optionError("delay")}
        </div>
        <div className={`field${errors.max_attempts ? " field--invalid" : ""}`}>
          <label htmlFor="opt-max_attempts">Max attempts</label>
          <input type="number" min={1} step={1} placeholder={String(type.max_attempts ?? "")} {...option("max_attempts")} />
          {optionError("max_attempts")}
        </div>
      </fieldset>
      {formError && <p className="notice notice--error" role="alert">{formError}</p>}
      <button type="submit" className="button--primary" disabled={submit.isPending}>
        {submit.isPending ? "Submitting…" : `Submit ${type.name}`}
      </button>
      {submitted.length > 0 && (
        <div role="status" className="notice notice--ok" data-testid="submitted">
          Submitted: {submitted.map((id) => <Link key={id} to={links.job(id)} className="job-link">{id}</Link>)}
        </div>
      )}
    </form>
  );
}
