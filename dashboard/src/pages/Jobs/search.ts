/** The jobs page's search, kept in the page URL's query string (it holds no secret). */
import { JOB_STATUSES, type JobSearch, type JobStatus, type SortField } from "../../api/types";

export const PAGE_SIZES = [25, 50, 100, 200] as const;
const SORTS: readonly SortField[] = ["submitted_ms", "updated_ms", "finished_ms"];

export function searchFromParams(params: URLSearchParams): JobSearch {
  const number = (name: string) => {
    const v = Number(params.get(name) ?? "");
    return params.get(name) && Number.isFinite(v) ? v : undefined;
  };
  const statuses = params.getAll("status").filter((s): s is JobStatus => JOB_STATUSES.includes(s as JobStatus));
  const sort = params.get("sort");
  const limit = number("limit");
  return {
    status: statuses.length > 0 ? statuses : undefined,
    queue: params.get("queue") || undefined,
    type: params.get("type") || undefined,
    text: params.get("text") || undefined,
    since_ms: number("since_ms"),
    until_ms: number("until_ms"),
    sort: SORTS.includes(sort as SortField) ? (sort as SortField) : "submitted_ms",
    order: params.get("order") === "asc" ? "asc" : "desc",
    limit: PAGE_SIZES.includes(limit as (typeof PAGE_SIZES)[number]) ? limit : 50,
    arg: nonEmpty(params.getAll("arg").filter((a) => a.includes("=")).slice(0, MAX_ARGS)),
    id_prefix: params.get("id_prefix") || undefined,
  };
}

export const MAX_ARGS = 5;

const nonEmpty = (list: string[]): string[] | undefined => (list.length > 0 ? list : undefined);

/** "order_id=42 customer=acme" (spaces between pairs) as the API's arg list, and back. */
export function parseArgs(text: string): string[] | undefined {
  return nonEmpty(text.split(/\s+/).filter((pair) => pair.includes("=")).slice(0, MAX_ARGS));
}

export const formatArgs = (args: string[] | undefined): string => (args ?? []).join(" ");

export function paramsFromSearch(search: JobSearch): URLSearchParams {
  const params = new URLSearchParams();
  for (const s of search.status ?? []) params.append("status", s);
  for (const a of search.arg ?? []) params.append("arg", a);
  const scalars: [string, string | number | undefined][] = [
    ["queue", search.queue], ["type", search.type], ["text", search.text],
    ["since_ms", search.since_ms], ["until_ms", search.until_ms],
    ["sort", search.sort === "submitted_ms" ? undefined : search.sort],
    ["order", search.order === "desc" ? undefined : search.order],
    ["limit", search.limit === 50 ? undefined : search.limit],
    ["id_prefix", search.id_prefix],
  ];
  for (const [name, value] of scalars) if (value !== undefined && value !== "") params.set(name, String(value));
  return params;
}
