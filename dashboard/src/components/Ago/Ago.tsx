/** "3 s ago", kept current by a shared one-second clock. */
import { useSyncExternalStore } from "react";

import { formatAgo, formatTime } from "../../format";

const listeners = new Set<() => void>();
let now = Date.now();
let timer: ReturnType<typeof setInterval> | undefined;

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  timer ??= setInterval(() => {
    now = Date.now();
    for (const l of listeners) l();
  }, 1_000);
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

/** The current time, re-rendering every second. */
export function useNow(): number {
  return useSyncExternalStore(subscribe, () => now);
}

export function Ago({ ms }: { ms: number | null | undefined }) {
  const current = useNow();
  if (ms === null || ms === undefined) return <>–</>;
  return <time dateTime={new Date(ms).toISOString()} title={formatTime(ms)}>{formatAgo(ms, current)}</time>;
}
