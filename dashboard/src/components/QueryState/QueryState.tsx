/** Loading, error and empty states for one query, the same on every page. */
import type { UseQueryResult } from "@tanstack/react-query";
import type { ReactNode } from "react";

import { ApiError } from "../../api/client";

type Props<T> = {
  query: UseQueryResult<T>;
  /** What the data looks like when there is nothing to show. */
  isEmpty?: (data: T) => boolean;
  empty?: ReactNode;
  label: string;
  children: (data: T) => ReactNode;
};

export function QueryState<T>({ query, isEmpty, empty, label, children }: Props<T>) {
  if (query.isPending) {
    return <p className="state state--loading" role="status" aria-live="polite">Loading {label}…</p>;
  }
  if (query.isError) return <ErrorState error={query.error} label={label} retry={() => void query.refetch()} />;
  if (isEmpty?.(query.data)) return <div className="state state--empty">{empty ?? `No ${label}.`}</div>;
  return <>{children(query.data)}</>;
}

export function ErrorState({ error, label, retry }: { error: unknown; label: string; retry?: () => void }) {
  return (
    <div className="state state--error" role="alert">
      <p><strong>Could not load {label}.</strong> {describeError(error)}</p>
      {retry && <button type="button" onClick={retry}>Try again</button>}
    </div>
  );
}

export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 403) return `Your key's role may not do this (${error.message}).`;
    return error.message;
  }
  return error instanceof Error ? error.message : String(error);
}
