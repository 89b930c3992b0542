import { useEffect, useState } from "preact/hooks";
import type { AuthConfig } from "../api/types";
import { ErrorBanner } from "../components/common";
import { navigate } from "../router";
import { api, currentUser, loginNotice, useStore } from "../state";

export function AuthPage({ mode }: { mode: "login" | "register" }) {
  const notice = useStore(loginNotice);
  const [config, setConfig] = useState<AuthConfig | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [email, setEmail] = useState("");
  const [displayName, setDisplayName] = useState("");

  useEffect(() => {
    // The extension's start-up order: an anonymous session, then the auth config.
    if (!api.sessionId) api.openSession().catch(() => undefined);
    api
      .call<AuthConfig>("/api/v1/auth/config", { auth: false })
      .then(setConfig)
      .catch(() => setConfig(null));
  }, []);

  useEffect(() => setError(null), [mode]);

  async function submit(e: Event) {
    e.preventDefault();
    setError(null);
    if (mode === "register" && password.length < 8) {
      setError(new Error("The password needs at least 8 characters."));
      return;
    }
    setBusy(true);
    try {
      const tokens =
        mode === "login"
          ? await api.login(username.trim(), password)
          : await api.register({
              username: username.trim(),
              password,
              email: email.trim() || undefined,
              display_name: displayName.trim() || undefined,
            });
      loginNotice.set(null);
      currentUser.set(tokens.user);
      navigate("/cases", { replace: true });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  const canRegister = config?.supports_registration !== false;
  const title = mode === "login" ? "Log in to FaultMaven" : "Create your FaultMaven account";
  return (
    <div class="auth">
      <form class="panel auth-form" onSubmit={submit} aria-labelledby="auth-title">
        <p class="brand-big">
          <img src="/favicon.svg" alt="" width="36" height="36" /> FaultMaven
        </p>
        <h1 id="auth-title">{title}</h1>
        {notice && (
          <p class="notice" role="status">
            {notice}
          </p>
        )}
        <ErrorBanner error={error} />
        <label>
          Username
          <input
            name="username"
            autoComplete="username"
            required
            minLength={mode === "register" ? 3 : 1}
            maxLength={mode === "register" ? 50 : 255}
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={mode === "login" ? "current-password" : "new-password"}
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {mode === "register" && (
          <>
            <label>
              Email (optional)
              <input
                name="email"
                type="email"
                autoComplete="email"
                value={email}
                onInput={(e) => setEmail(e.currentTarget.value)}
              />
            </label>
            <label>
              Display name (optional)
              <input
                name="display_name"
                autoComplete="name"
                value={displayName}
                onInput={(e) => setDisplayName(e.currentTarget.value)}
              />
            </label>
          </>
        )}
        <button type="submit" disabled={busy}>
          {mode === "login" ? "Log in" : "Create account"}
        </button>
        {mode === "login" && canRegister && (
          <p>
            New here? <a href="/register">Create an account</a>
          </p>
        )}
        {mode === "register" && (
          <p>
            Already registered? <a href="/login">Log in</a>
          </p>
        )}
      </form>
    </div>
  );
}
