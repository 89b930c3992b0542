import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { api, currentUser, loginNotice, useStore } from "../state";
import { navigate } from "../router";

const NAV = [
  { href: "/cases", label: "Cases" },
  { href: "/knowledge", label: "Knowledge base" },
  { href: "/settings", label: "Settings" },
];

export function Layout({ path, children }: { path: string; children: ComponentChildren }) {
  const user = useStore(currentUser);
  const [busy, setBusy] = useState(false);

  async function logout() {
    setBusy(true);
    try {
      await api.logout();
    } catch {
      // The tokens are forgotten locally whatever the server said.
    } finally {
      setBusy(false);
      currentUser.set(null);
      loginNotice.set("You are logged out.");
      navigate("/login", { replace: true });
    }
  }

  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <a class="brand" href="/cases">
          <img src="/favicon.svg" alt="" width="22" height="22" /> FaultMaven
        </a>
        <nav aria-label="Main">
          <ul>
            {NAV.map((n) => (
              <li key={n.href}>
                <a href={n.href} aria-current={path.startsWith(n.href) ? "page" : undefined}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class="muted" title={user?.email}>
            {user?.display_name || user?.username}
          </span>
          <button type="button" class="secondary" onClick={logout} disabled={busy}>
            Log out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </div>
  );
}
