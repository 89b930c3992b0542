import { describe, expect, it } from "vitest";
import { ApiClient, MemoryTokenStore, errorFromResponse, type LockFn, type Tokens } from "./client";

const user = {
  user_id: "u1",
  username: "ada",
  email: "",
  display_name: "Ada",
  created_at: "",
  is_dev_user: false,
};

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

/** A scripted server: routes by "METHOD path" to a handler. */
function server(routes: Record<string, (call: Call) => Response | Promise<Response>>) {
  const calls: Call[] = [];
  const fetchFn = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    const method = init?.method ?? "GET";
    const headers = Object.fromEntries(Object.entries((init?.headers ?? {}) as Record<string, string>));
    const body = typeof init?.body === "string" ? JSON.parse(init.body) : init?.body;
    const call = { url, method, headers, body };
    calls.push(call);
    const handler = routes[`${method} ${url.split("?")[0]}`];
    if (!handler) return json(404, { detail: "no route", code: "NOT_FOUND" });
    return handler(call);
  }) as typeof fetch;
  return { calls, fetchFn };
}

function tokens(over: Partial<Tokens> = {}): Tokens {
  return { accessToken: "a1", refreshToken: "r1", expiresAt: 1_000_000, user, ...over };
}

describe("ApiClient token refresh", () => {
  it("refreshes an access token that is about to expire before the call, keeping the newest refresh token", async () => {
    const store = new MemoryTokenStore();
    store.save(tokens({ expiresAt: 1_010_000 }));
    const { calls, fetchFn } = server({
      "POST /api/v1/auth/refresh": () => json(200, { access_token: "a2", refresh_token: "r2", expires_in: 900 }),
      "GET /api/v1/cases": (c) => json(200, { seen: c.headers.Authorization }),
    });
    const client = new ApiClient({ store, fetchFn, now: () => 1_000_000 });
    const out = await client.call<{ seen: string }>("/api/v1/cases");
    expect(out.seen).toBe("Bearer a2");
    expect(calls[0].body).toEqual({ refresh_token: "r1" });
    expect(store.load()).toMatchObject({ accessToken: "a2", refreshToken: "r2", expiresAt: 1_900_000 });
  });

  it("refreshes once on a 401 and retries the call", async () => {
    const store = new MemoryTokenStore();
    store.save(tokens({ expiresAt: 9_000_000 }));
    const { calls, fetchFn } = server({
      "POST /api/v1/auth/refresh": () => json(200, { access_token: "a2", refresh_token: "r2", expires_in: 900 }),
      "GET /api/v1/auth/me": (c) =>
        c.headers.Authorization === "Bearer a2"
          ? json(200, { ok: true })
          : json(401, { detail: "Token expired", code: "TOKEN_EXPIRED" }),
    });
    const client = new ApiClient({ store, fetchFn, now: () => 1_000_000 });
    expect(await client.call("/api/v1/auth/me")).toEqual({ ok: true });
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual([
      "GET /api/v1/auth/me",
      "POST /api/v1/auth/refresh",
      "GET /api/v1/auth/me",
    ]);
  });

  it("shares one refresh between concurrent calls, so a rotated token is never presented twice", async () => {
    const store = new MemoryTokenStore();
    store.save(tokens({ expiresAt: 1_000_500 }));
    let refreshes = 0;
    const { fetchFn } = server({
      "POST /api/v1/auth/refresh": async () => {
        refreshes++;
        await new Promise((r) => setTimeout(r, 10));
        return json(200, { access_token: "a2", refresh_token: "r2", expires_in: 900 });
      },
      "GET /api/v1/cases": () => json(200, {}),
    });
    const client = new ApiClient({ store, fetchFn, now: () => 1_000_000 });
    await Promise.all([1, 2, 3].map(() => client.call("/api/v1/cases")));
    expect(refreshes).toBe(1);
  });

  it("adopts tokens another tab rotated while waiting for the lock instead of reusing a spent one", async () => {
    const store = new MemoryTokenStore();
    store.save(tokens({ expiresAt: 1_000_500 }));
    const otherTab: LockFn = async (_name, fn) => {
      // Another tab holds the lock and rotates first.
      store.save(tokens({ accessToken: "a9", refreshToken: "r9", expiresAt: 1_900_000 }));
      return fn();
    };
    const { calls, fetchFn } = server({
      "GET /api/v1/cases": (c) => json(200, { seen: c.headers.Authorization }),
    });
    const client = new ApiClient({ store, fetchFn, lock: otherTab, now: () => 1_000_000 });
    expect(await client.call("/api/v1/cases")).toEqual({ seen: "Bearer a9" });
    expect(calls.some((c) => c.url.endsWith("/auth/refresh"))).toBe(false);
  });

  it("ends the login with a session-expired message when the refresh is refused", async () => {
    const store = new MemoryTokenStore();
    store.save(tokens({ expiresAt: 9_000_000 }));
    const { fetchFn } = server({
      "POST /api/v1/auth/refresh": () => json(401, { detail: "Refresh token reused", code: "TOKEN_REUSED" }),
      "GET /api/v1/cases": () => json(401, { detail: "Token revoked", code: "TOKEN_REVOKED" }),
    });
    const client = new ApiClient({ store, fetchFn, now: () => 1_000_000 });
    const expired: string[] = [];
    client.onExpired = (m) => expired.push(m);
    await expect(client.call("/api/v1/cases")).rejects.toMatchObject({ code: "SESSION_EXPIRED" });
    expect(expired).toEqual(["Your session has expired. Please log in again."]);
    expect(store.load()).toBeNull();
  });

  it("keeps the tokens when the refresh fails for a server error (not a refusal)", async () => {
    const store = new MemoryTokenStore();
    store.save(tokens({ expiresAt: 1_000_100 }));
    const { fetchFn } = server({
      "POST /api/v1/auth/refresh": () =>
        json(503, { detail: "auth is down", code: "UNAVAILABLE" }, { "Retry-After": "5" }),
    });
    const client = new ApiClient({ store, fetchFn, now: () => 1_000_000 });
    await expect(client.call("/api/v1/cases")).rejects.toMatchObject({ status: 503 });
    expect(store.load()?.refreshToken).toBe("r1");
  });
});

describe("ApiClient sessions", () => {
  it("opens an anonymous session before login and sends it as X-Session-Id", async () => {
    const store = new MemoryTokenStore();
    const { calls, fetchFn } = server({
      "POST /api/v1/sessions": () => json(201, { session_id: "s-anon", session_resumed: false }),
      "POST /api/v1/auth/login": () =>
        json(200, { access_token: "a1", refresh_token: "r1", expires_in: 900, session_id: "s-user", user }),
      "GET /api/v1/cases": (c) => json(200, { session: c.headers["X-Session-Id"] }),
    });
    const client = new ApiClient({ store, fetchFn, now: () => 0, clientId: "dash-1" });
    await client.login("ada", "correct horse");
    expect(calls[0].headers.Authorization).toBeUndefined();
    expect(calls[0].body).toEqual({ client_id: "dash-1", session_type: "troubleshooting", timeout_minutes: 180 });
    expect(calls[1].headers["X-Session-Id"]).toBe("s-anon");
    expect(await client.call("/api/v1/cases")).toEqual({ session: "s-user" });
    // A reload (a new client on the same storage) keeps sending the login's session.
    const reloaded = new ApiClient({ store, fetchFn, now: () => 0 });
    expect(await reloaded.call("/api/v1/cases")).toEqual({ session: "s-user" });
  });

  it("opens a new session and retries once on 401 SESSION_EXPIRED", async () => {
    const store = new MemoryTokenStore();
    store.save(tokens({ expiresAt: 9_000_000 }));
    let sessions = 0;
    const { fetchFn } = server({
      "POST /api/v1/sessions": () => json(201, { session_id: `s${++sessions}` }),
      "GET /api/v1/cases": (c) =>
        c.headers["X-Session-Id"] === "s1"
          ? json(200, { ok: true })
          : json(401, { detail: "Session expired", code: "SESSION_EXPIRED" }, { "x-error-code": "SESSION_EXPIRED" }),
    });
    const client = new ApiClient({ store, fetchFn, now: () => 1_000_000 });
    client.sessionId = "s-old";
    expect(await client.call("/api/v1/cases")).toEqual({ ok: true });
    expect(store.load()).not.toBeNull();
  });
});

describe("errorFromResponse", () => {
  it("uses the API's sentence and code", async () => {
    const e = await errorFromResponse(json(409, { detail: "Username taken.", code: "CONFLICT" }));
    expect(e).toMatchObject({ status: 409, code: "CONFLICT", message: "Username taken." });
  });

  it("flattens a 422 detail list into one readable line", async () => {
    const e = await errorFromResponse(
      json(422, { detail: [{ loc: ["body", "password"], msg: "String should have at least 8 characters" }] }),
    );
    expect(e.message).toBe("password: String should have at least 8 characters");
  });

  it("says when to retry after a 429", async () => {
    const e = await errorFromResponse(
      json(429, { detail: "Too many login attempts.", code: "RATE_LIMITED" }, { "Retry-After": "30" }),
    );
    expect(e.retryAfter).toBe(30);
    expect(e.message).toBe("Too many login attempts. Try again in 30 s.");
  });

  it("never shows an HTML error page, only a sentence", async () => {
    const e = await errorFromResponse(new Response("<html>Bad gateway</html>", { status: 502 }));
    expect(e.message).toBe("The server failed (502); try again shortly.");
  });
});
