/** Sign in with an API key (checked against the API before it is kept). */
import { useState, type FormEvent } from "react";

import { checkKey } from "../../api/client";
import { useAuth } from "../../auth/AuthProvider";
import { describeError } from "../../components/QueryState/QueryState";

export function LoginPage() {
  const { login, notice } = useAuth();
  const [key, setKey] = useState("");
  const [remember, setRemember] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const trimmed = key.trim();
    if (!trimmed) {
      setError("Enter an API key.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await checkKey(trimmed);
      login(trimmed, remember);
    } catch (exc) {
      setError(describeError(exc));
      setBusy(false);
    }
  };

  return (
    <main className="login" id="main">
      <form className="card login__form" onSubmit={submit} noValidate aria-labelledby="login-title">
        <h1 id="login-title">Conveyor</h1>
        <p className="muted">Sign in with an API key. <code>conveyor up</code> prints an admin key;
          create others with <code>conveyor keys create --role viewer</code>.</p>
        {notice && <p className="notice notice--error" role="alert">{notice}</p>}
        <label htmlFor="api-key">API key</label>
        <input id="api-key" type="password" autoComplete="off" spellCheck={false} autoFocus
               value={key} onChange={(e) => setKey(e.target.value)}
               aria-invalid={error !== null} aria-describedby={error ? "api-key-error" : undefined} />
        {error && <p id="api-key-error" className="field-error" role="alert">{error}</p>}
        <label className="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.target.checked)} />
          Stay signed in in this tab (the key is kept in session storage until the tab closes)
        </label>
        <button type="submit" className="button--primary" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
