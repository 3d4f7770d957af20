/**
 * The API key of this browser tab: in memory, and in sessionStorage when the user asks to stay
 * signed in (it then survives a reload but not the tab). Never in the URL, never in
 * localStorage. The key's role comes from the WebSocket's "authenticated" answer.
 */
import { useQueryClient } from "@tanstack/react-query";
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";

import { setCredentials } from "../api/client";
import type { Role } from "../api/types";

const STORAGE_KEY = "conveyor.apiKey";

export type Auth = {
  key: string | null;
  role: Role | null;
  /** Why the user was signed out, shown on the login page. */
  notice: string | null;
  login: (key: string, remember: boolean) => void;
  logout: (notice?: string) => void;
  setRole: (role: Role) => void;
};

const AuthContext = createContext<Auth | null>(null);

function storedKey(): string | null {
  try {
    return window.sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;  // storage disabled: memory only
  }
}

function store(key: string | null): void {
  try {
    if (key === null) window.sessionStorage.removeItem(STORAGE_KEY);
    else window.sessionStorage.setItem(STORAGE_KEY, key);
  } catch {
    // storage disabled: the key stays in memory only
  }
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [key, setKey] = useState<string | null>(storedKey);
  const [role, setRole] = useState<Role | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const logout = useCallback((why?: string) => {
    store(null);
    setKey(null);
    setRole(null);
    setNotice(why ?? null);
    queryClient.clear();
  }, [queryClient]);

  const login = useCallback((next: string, remember: boolean) => {
    store(remember ? next : null);
    setNotice(null);
    setKey(next);
  }, []);

  // Set before children render, so their first requests carry the key.
  setCredentials(key, () => logout("The API key was refused (unknown or revoked): sign in again."));
  useEffect(() => () => setCredentials(null, () => undefined), []);

  const value = useMemo(() => ({ key, role, notice, login, logout, setRole }),
    [key, role, notice, login, logout]);
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (auth === null) throw new Error("useAuth outside AuthProvider");
  return auth;
}

/**
 * What the key's role may do (unknown role: assume it may, and let the API answer 403). Every
 * role searches jobs: a producer's search is limited by the API to the jobs its key submitted.
 */
export function usePermissions() {
  const { role } = useAuth();
  return {
    readsAll: role !== "producer",
    submits: role !== "viewer",
    administers: role === null || role === "admin",
  };
}
