/** The frame of every signed-in page: navigation by role, the live status, sign out. */
import { useState, type FormEvent, type ReactNode } from "react";
import { NavLink, useNavigate } from "react-router";

import { useAuth, usePermissions } from "../../auth/AuthProvider";
import { formatDuration } from "../../format";
import { BEHIND_AFTER_MS, useFreshness, useLive } from "../../live/LiveProvider";
import { useNow } from "../Ago/Ago";
import { api, links, routes } from "../../urls";

const LIVE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  stopped: "Offline",
  behind: "Behind",
} as const;

export function Layout({ children }: { children: ReactNode }) {
  const { role, logout } = useAuth();
  const { readsAll, submits } = usePermissions();
  const live = useLive();
  const behindMs = useBehindMs();
  // Connected, but the numbers on screen lag the events: say so instead of "Live".
  const state = live.state === "live" && behindMs > BEHIND_AFTER_MS ? "behind" : live.state;
  const title = state === "behind"
    ? `Connected, but the numbers on screen are ${formatDuration(behindMs)} behind the live `
      + "events: the API answers slowly or fails; they catch up when it answers"
    : live.error ?? undefined;
  const pages = [
    { to: routes.overview, label: "Overview", show: readsAll, end: true },
    { to: routes.queues, label: "Queues", show: readsAll },
    { to: routes.jobs, label: readsAll ? "Jobs" : "My jobs", show: true },
    { to: routes.deadLetters, label: "Dead letters", show: readsAll },
    { to: routes.workers, label: "Workers", show: readsAll },
    { to: routes.schedules, label: "Schedules", show: readsAll },
    { to: routes.metrics, label: "Metrics", show: readsAll },
    { to: routes.submit, label: "Submit", show: submits },
  ];
  return (
    <div className="app">
      <a className="skip-link" href="#main">Skip to content</a>
      <header className="topbar">
        <span className="brand">Conveyor</span>
        <nav aria-label="Pages" className="nav">
          {pages.filter((p) => p.show).map((p) => (
            <NavLink key={p.to} to={p.to} end={p.end ?? false}>{p.label}</NavLink>
          ))}
        </nav>
        <JobFinder />
        <div className="topbar__end">
          <span className={`live live--${state}`} role="status" aria-live="polite"
                data-testid="live-state" data-reconnects={live.reconnects}
                data-behind-ms={behindMs} title={title}>
            <span className="live__dot" aria-hidden="true" /> {LIVE_TEXT[state]}
          </span>
          {role && <span className="role" data-testid="role">{role}</span>}
          <a href={api.docs} target="_blank" rel="noreferrer">API docs</a>
          <button type="button" onClick={() => logout()}>Sign out</button>
        </div>
      </header>
      {live.error && <p className="banner banner--warn" role="alert">Live events: {live.error}</p>}
      <main id="main" tabIndex={-1}>{children}</main>
    </div>
  );
}

/** How long the oldest event not yet shown by a re-read has waited (0: none waits). */
function useBehindMs(): number {
  const { behindSince } = useFreshness();
  const now = useNow();
  return behindSince === null ? 0 : Math.max(0, now - behindSince);
}

/** Open a job by its id (the only way in for a producer key, which cannot search). */
function JobFinder() {
  const navigate = useNavigate();
  const [id, setId] = useState("");
  const open = (e: FormEvent) => {
    e.preventDefault();
    if (id.trim()) navigate(links.job(id.trim()));
    setId("");
  };
  return (
    <form className="finder" role="search" onSubmit={open}>
      <label htmlFor="find-job" className="visually-hidden">Job id</label>
      <input id="find-job" value={id} onChange={(e) => setId(e.target.value)} placeholder="Job id" />
      <button type="submit">Open</button>
    </form>
  );
}
