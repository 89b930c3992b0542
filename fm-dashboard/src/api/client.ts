// The dashboard's only way to the API: same-origin fetch through the gateway, with the
// session header, silent token refresh (rotating refresh tokens) and one error shape.

import type {
  AuthTokenResponse,
  JobStatus,
  SessionResponse,
  TokenRefreshResponse,
  UserProfile,
} from "./types";

export const EXPIRED_MESSAGE = "Your session has expired. Please log in again.";
const REFRESH_SKEW_MS = 30_000;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** A human sentence for a failed response, from the API's `{detail, code}` shape. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await res.clone().json();
  } catch {
    body = null;
  }
  const retryAfterRaw = res.headers.get("Retry-After");
  const retryAfter = retryAfterRaw && /^\d+$/.test(retryAfterRaw) ? Number(retryAfterRaw) : undefined;
  let code = res.headers.get("x-error-code") ?? "";
  let message = "";
  if (body && typeof body === "object") {
    const b = body as { detail?: unknown; code?: unknown };
    if (typeof b.code === "string") code = b.code;
    if (typeof b.detail === "string") message = b.detail;
    else if (Array.isArray(b.detail)) message = validationMessage(b.detail);
  }
  if (!code) code = `HTTP_${res.status}`;
  if (!message) message = fallbackMessage(res.status);
  if (res.status === 429 && retryAfter !== undefined && !/\d+ s/.test(message)) {
    message = `${message} Try again in ${retryAfter} s.`;
  }
  return new ApiError(res.status, code, message, retryAfter);
}

function validationMessage(items: unknown[]): string {
  const parts = items.map((item) => {
    const it = item as { loc?: unknown[]; msg?: string };
    const loc = Array.isArray(it.loc) ? it.loc.filter((p) => p !== "body" && p !== "query") : [];
    const where = loc.length ? `${loc.join(".")}: ` : "";
    return `${where}${it.msg ?? "invalid value"}`;
  });
  return parts.join("; ") || "The request was not valid.";
}

function fallbackMessage(status: number): string {
  if (status === 401) return "Please log in.";
  if (status === 403) return "You are not allowed to do that.";
  if (status === 404) return "Not found.";
  if (status === 409) return "That conflicts with the current state; reload and try again.";
  if (status === 413) return "That upload is too large.";
  if (status === 429) return "Too many requests.";
  if (status === 503) return "A FaultMaven service is unavailable right now; try again shortly.";
  if (status >= 500) return `The server failed (${status}); try again shortly.`;
  return `The request failed (${status}).`;
}

export interface Tokens {
  accessToken: string;
  refreshToken: string | null;
  /** Epoch milliseconds at which the access token expires. */
  expiresAt: number;
  user: UserProfile;
  /** The API session (X-Session-Id) this login runs in. */
  sessionId?: string | null;
}

export interface TokenStore {
  load(): Tokens | null;
  save(tokens: Tokens | null): void;
}

export class MemoryTokenStore implements TokenStore {
  private tokens: Tokens | null = null;
  load(): Tokens | null {
    return this.tokens;
  }
  save(tokens: Tokens | null): void {
    this.tokens = tokens;
  }
}

/** Tokens in localStorage, so a reload or a second tab stays logged in. */
export class LocalTokenStore implements TokenStore {
  constructor(private readonly key = "fm.tokens") {}
  load(): Tokens | null {
    const raw = localStorage.getItem(this.key);
    if (!raw) return null;
    try {
      return JSON.parse(raw) as Tokens;
    } catch {
      localStorage.removeItem(this.key);
      return null;
    }
  }
  save(tokens: Tokens | null): void {
    if (tokens) localStorage.setItem(this.key, JSON.stringify(tokens));
    else localStorage.removeItem(this.key);
  }
}

export type LockFn = <T>(name: string, fn: () => Promise<T>) => Promise<T>;

/** Web Locks serialise refreshes across tabs: a refresh token is single-use, and a
 * second use revokes the whole family, so two tabs must never present the same one. */
export const browserLock: LockFn = (name, fn) => {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  return locks ? (locks.request(name, fn) as Promise<Awaited<ReturnType<typeof fn>>>) : fn();
};

export interface SendOptions {
  method?: string;
  json?: unknown;
  body?: BodyInit;
  headers?: Record<string, string>;
  /** Send the bearer token (default true). */
  auth?: boolean;
  signal?: AbortSignal;
}

export interface ClientOptions {
  store: TokenStore;
  baseUrl?: string;
  fetchFn?: typeof fetch;
  lock?: LockFn;
  now?: () => number;
  clientId?: string;
}

export class ApiClient {
  readonly store: TokenStore;
  private readonly baseUrl: string;
  private readonly fetchFn: typeof fetch;
  private readonly lock: LockFn;
  private readonly now: () => number;
  readonly clientId: string;
  sessionId: string | null = null;
  private refreshing: Promise<boolean> | null = null;
  private opening: Promise<string> | null = null;
  /** Called once the tokens are gone for good (refresh refused). */
  onExpired: ((message: string) => void) | null = null;

  constructor(opts: ClientOptions) {
    this.store = opts.store;
    this.baseUrl = opts.baseUrl ?? "";
    this.fetchFn = opts.fetchFn ?? ((input, init) => fetch(input, init));
    this.lock = opts.lock ?? browserLock;
    this.now = opts.now ?? (() => Date.now());
    this.clientId = opts.clientId ?? "faultmaven-dashboard";
    // A reload keeps the session of the login, as it keeps the tokens.
    this.sessionId = this.store.load()?.sessionId ?? null;
  }

  get tokens(): Tokens | null {
    return this.store.load();
  }

  url(path: string): string {
    return this.baseUrl + sameOriginPath(path);
  }

  /** POST /api/v1/sessions, before login without a token, as the extension does. */
  openSession(): Promise<string> {
    this.opening ??= (async () => {
      const tokens = this.store.load();
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (tokens) headers.Authorization = `Bearer ${tokens.accessToken}`;
      const res = await this.rawFetch("/api/v1/sessions", {
        method: "POST",
        headers,
        body: JSON.stringify({
          client_id: this.clientId,
          session_type: "troubleshooting",
          timeout_minutes: 180,
        }),
      });
      if (!res.ok) throw await errorFromResponse(res);
      const body = (await res.json()) as SessionResponse;
      this.sessionId = body.session_id;
      const current = this.store.load();
      if (current) this.store.save({ ...current, sessionId: body.session_id });
      return body.session_id;
    })().finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  async login(username: string, password: string): Promise<Tokens> {
    return this.authenticate("/api/v1/auth/login", { username, password });
  }

  async register(fields: {
    username: string;
    password: string;
    email?: string;
    display_name?: string;
  }): Promise<Tokens> {
    const body: Record<string, string> = { username: fields.username, password: fields.password };
    if (fields.email) body.email = fields.email;
    if (fields.display_name) body.display_name = fields.display_name;
    return this.authenticate("/api/v1/auth/register", body);
  }

  private async authenticate(path: string, body: unknown): Promise<Tokens> {
    if (!this.sessionId) {
      try {
        await this.openSession();
      } catch {
        // The session is an extra; logging in works without one.
      }
    }
    const res = await this.send(path, { method: "POST", json: body, auth: false });
    if (!res.ok) throw await errorFromResponse(res);
    const data = (await res.json()) as AuthTokenResponse;
    const tokens: Tokens = {
      accessToken: data.access_token,
      refreshToken: data.refresh_token ?? null,
      expiresAt: this.now() + data.expires_in * 1000,
      user: data.user,
      sessionId: data.session_id || this.sessionId,
    };
    this.store.save(tokens);
    this.sessionId = tokens.sessionId ?? null;
    return tokens;
  }

  async logout(): Promise<void> {
    try {
      if (this.store.load()) {
        await this.send("/api/v1/auth/logout", { method: "POST" });
      }
    } finally {
      this.store.save(null);
      this.sessionId = null;
    }
  }

  /** Forget the tokens and tell the app, which shows the message on the login page. */
  expire(message = EXPIRED_MESSAGE): void {
    const had = this.store.load() !== null;
    this.store.save(null);
    this.sessionId = null;
    if (had) this.onExpired?.(message);
  }

  /** Exchange the refresh token for new tokens; false when the server refused it. */
  refresh(): Promise<boolean> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<boolean> {
    const before = this.store.load();
    if (!before?.refreshToken) return false;
    return this.lock("fm-token-refresh", async () => {
      const current = this.store.load();
      if (!current?.refreshToken) return false;
      // Another tab rotated the tokens while we waited for the lock: use its result
      // rather than presenting a refresh token that is already spent.
      if (
        current.refreshToken !== before.refreshToken &&
        current.expiresAt - this.now() > REFRESH_SKEW_MS
      ) {
        return true;
      }
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (this.sessionId) headers["X-Session-Id"] = this.sessionId;
      const res = await this.rawFetch("/api/v1/auth/refresh", {
        method: "POST",
        headers,
        body: JSON.stringify({ refresh_token: current.refreshToken }),
      });
      if (!res.ok) {
        if (res.status >= 500 || res.status === 429) throw await errorFromResponse(res);
        // Refused (used, revoked or expired): the caller ends the login with expire().
        return false;
      }
      const data = (await res.json()) as TokenRefreshResponse;
      this.store.save({
        ...current,
        accessToken: data.access_token,
        refreshToken: data.refresh_token ?? current.refreshToken,
        expiresAt: this.now() + data.expires_in * 1000,
      });
      return true;
    });
  }

  /** A valid access token, refreshed first when it is about to expire. */
  async freshAccessToken(): Promise<string> {
    const tokens = this.store.load();
    if (!tokens) throw new ApiError(401, "NOT_LOGGED_IN", "Please log in.");
    if (tokens.expiresAt - this.now() > REFRESH_SKEW_MS) return tokens.accessToken;
    if (await this.refresh()) return this.store.load()!.accessToken;
    this.expire();
    throw new ApiError(401, "SESSION_EXPIRED", EXPIRED_MESSAGE);
  }

  /**
   * One API call. A 401 `SESSION_EXPIRED` opens a new session and retries once; any
   * other 401 refreshes the tokens and retries once, and ends the login if that fails.
   */
  async send(path: string, opts: SendOptions = {}): Promise<Response> {
    const { method = "GET", json, body, headers = {}, auth = true, signal } = opts;
    let sessionRetried = false;
    let authRetried = false;
    if (auth) await this.freshAccessToken();
    for (;;) {
      const h: Record<string, string> = { ...headers };
      if (json !== undefined) h["Content-Type"] = "application/json";
      if (auth) {
        const tokens = this.store.load();
        if (!tokens) throw new ApiError(401, "NOT_LOGGED_IN", "Please log in.");
        h.Authorization = `Bearer ${tokens.accessToken}`;
      }
      if (this.sessionId) h["X-Session-Id"] = this.sessionId;
      const res = await this.rawFetch(path, {
        method,
        headers: h,
        body: json !== undefined ? JSON.stringify(json) : body,
        signal,
      });
      if (res.status !== 401) return res;
      const code = await errorCode(res);
      if (code === "SESSION_EXPIRED" && !sessionRetried) {
        sessionRetried = true;
        await this.openSession();
        continue;
      }
      if (auth && !authRetried) {
        authRetried = true;
        if (await this.refresh()) continue;
        this.expire();
        throw new ApiError(401, "SESSION_EXPIRED", EXPIRED_MESSAGE);
      }
      return res;
    }
  }

  /** send() and parse the JSON answer; a non-2xx answer throws an ApiError. */
  async call<T>(path: string, opts: SendOptions = {}): Promise<T> {
    const res = await this.send(path, opts);
    if (!res.ok) throw await errorFromResponse(res);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Poll a job URL (a 202's Location) until it completes or fails. */
  async pollJob<T>(
    location: string,
    opts: { intervalMs?: number; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<T> {
    const interval = opts.intervalMs ?? 1000;
    const deadline = this.now() + (opts.timeoutMs ?? 300_000);
    for (;;) {
      const job = await this.call<JobStatus<T>>(location, { signal: opts.signal });
      if (job.status === "completed") return (job.result ?? (job as unknown)) as T;
      if (job.status === "failed") {
        const err: unknown = job.error;
        const msg = typeof err === "string" ? err : (err as { message?: string } | null)?.message;
        throw new ApiError(200, "JOB_FAILED", msg || "The job failed.");
      }
      if (this.now() > deadline) {
        throw new ApiError(0, "JOB_TIMEOUT", "The job is taking too long; check back later.");
      }
      await sleep(interval, opts.signal);
    }
  }

  private async rawFetch(path: string, init: RequestInit): Promise<Response> {
    try {
      return await this.fetchFn(this.url(path), { credentials: "same-origin", ...init });
    } catch (err) {
      if (err instanceof DOMException && err.name === "AbortError") throw err;
      throw new ApiError(0, "NETWORK", "Cannot reach FaultMaven. Check the connection and try again.");
    }
  }
}

async function errorCode(res: Response): Promise<string> {
  const header = res.headers.get("x-error-code");
  if (header) return header;
  try {
    const body = (await res.clone().json()) as { code?: unknown };
    return typeof body.code === "string" ? body.code : "";
  } catch {
    return "";
  }
}

/** Keep every call on the gateway's origin, even when a Location is absolute. */
export function sameOriginPath(path: string): string {
  if (/^https?:\/\//i.test(path)) {
    const u = new URL(path);
    return u.pathname + u.search;
  }
  return path.startsWith("/") ? path : `/${path}`;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(new DOMException("Cancelled", "AbortError"));
      },
      { once: true },
    );
  });
}
