/**
 * Connects the signed-in key to the live-events WebSocket and feeds what arrives into the
 * data layer (query invalidation and patches), the overview's series and the activity list.
 */
import { useQueryClient } from "@tanstack/react-query";
import {
  createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore,
  type ReactNode,
} from "react";

import { queryKeys } from "../api/queryKeys";
import type { Queue } from "../api/types";
import { useAuth } from "../auth/AuthProvider";
import { eventsSocketUrl } from "../urls";
import { Activity } from "./activity";
import { type Freshness, Invalidator } from "./invalidation";
import { LiveClient, type LiveState } from "./LiveClient";
import type { Filter } from "./protocol";
import { LiveSeries } from "./series";

type Live = {
  state: LiveState;
  reconnects: number;
  error: string | null;
  series: LiveSeries;
  activity: Activity;
  /** A producer's socket sees only jobs it names: pages name the jobs they show. */
  watch: (jobId: string) => () => void;
  /** How far the re-read views are behind the events (null before the first connection). */
  invalidator: Invalidator | null;
};

/** After this long behind the events, the badge no longer says "Live". */
export const BEHIND_AFTER_MS = 5_000;

const LiveContext = createContext<Live | null>(null);

declare global {
  interface Window {
    /** The live connection, for debugging from the console and for the browser tests. */
    __conveyorLive?: LiveClient;
  }
}

export function LiveProvider({ children }: { children: ReactNode }) {
  const { key, role, logout, setRole } = useAuth();
  const queryClient = useQueryClient();
  const [state, setState] = useState<LiveState>("connecting");
  const [reconnects, setReconnects] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const [invalidator, setInvalidator] = useState<Invalidator | null>(null);
  const series = useMemo(() => new LiveSeries(), []);
  const activity = useMemo(() => new Activity(), []);
  const watched = useRef(new Map<string, number>());
  const clientRef = useRef<LiveClient | null>(null);
  const isProducer = useRef(false);
  isProducer.current = role === "producer";

  useEffect(() => {
    if (key === null) return undefined;
    const invalidator = new Invalidator(queryClient);
    setInvalidator(invalidator);
    const filterFor = (role: string): Filter | null => {
      if (role !== "producer") return {};
      const jobs = [...watched.current.keys()].slice(-100);
      return jobs.length > 0 ? { jobs } : null;
    };
    const client = new LiveClient({ url: eventsSocketUrl(), key, filterFor }, {
      onEvent: (event) => {
        invalidator.onEvent(event);
        series.addEvent(event);
        activity.add(event);
      },
      onState: (next) => {
        setState(next);
        setReconnects(client.reconnects);
        if (next === "live") setError(null);
      },
      onRole: setRole,
      onGap: () => {
        series.reset();
        invalidator.all();
      },
      onUnauthorized: (reason) => logout(`The live connection was refused: ${reason}`),
      onError: setError,
    });
    clientRef.current = client;
    window.__conveyorLive = client;
    client.start();
    return () => {
      client.stop();
      invalidator.stop();
      clientRef.current = null;
      if (window.__conveyorLive === client) delete window.__conveyorLive;
    };
  }, [key, queryClient, series, activity, logout, setRole]);

  // Queue depths are sampled whenever the queues are (re-)read, on whichever page.
  useEffect(() => queryClient.getQueryCache().subscribe((change) => {
    if (change.type !== "updated" || change.action.type !== "success") return;
    if (change.query.queryKey[0] !== queryKeys.queues[0]) return;
    series.addDepth(change.query.state.data as Queue[], change.query.state.dataUpdatedAt);
  }), [queryClient, series]);

  const resubscribeTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const watch = useCallback((jobId: string) => {
    const counts = watched.current;
    const isNew = !counts.has(jobId);
    counts.set(jobId, (counts.get(jobId) ?? 0) + 1);
    if (isNew && isProducer.current) {
      // A page names its jobs one by one: subscribe once for all of them.
      clearTimeout(resubscribeTimer.current);
      resubscribeTimer.current = setTimeout(() => clientRef.current?.resubscribe(), 100);
    }
    return () => {
      const left = (counts.get(jobId) ?? 1) - 1;
      if (left > 0) counts.set(jobId, left);
      else counts.delete(jobId);
    };
  }, []);

  const value = useMemo<Live>(
    () => ({ state, reconnects, error, series, activity, watch, invalidator }),
    [state, reconnects, error, series, activity, watch, invalidator]);

  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): Live {
  const live = useContext(LiveContext);
  if (live === null) throw new Error("useLive outside LiveProvider");
  return live;
}

const NOT_BEHIND: Freshness = { behindSince: null, lastRead: null };
const noSubscription = () => () => undefined;

/** How current the re-read views are, re-rendering when that changes. */
export function useFreshness(): Freshness {
  const { invalidator } = useLive();
  return useSyncExternalStore(invalidator?.subscribe ?? noSubscription,
    invalidator?.getSnapshot ?? (() => NOT_BEHIND));
}

/** Re-renders when the series change (at most twice a second). */
export function useSeriesVersion(series: LiveSeries): number {
  return useSyncExternalStore(series.subscribe, series.getVersion);
}
