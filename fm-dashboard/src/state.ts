// App-wide state: the API client, the logged-in user, and a notice for the login page.

import { useEffect, useState } from "preact/hooks";
import { ApiClient, LocalTokenStore } from "./api/client";
import type { UserProfile } from "./api/types";

export class Store<T> {
  private listeners = new Set<() => void>();
  constructor(private current: T) {}
  get value(): T {
    return this.current;
  }
  set(value: T): void {
    this.current = value;
    for (const l of this.listeners) l();
  }
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export function useStore<T>(store: Store<T>): T {
  const [, force] = useState(0);
  useEffect(() => store.subscribe(() => force((n) => n + 1)), [store]);
  return store.value;
}

function browserClientId(): string {
  const key = "fm.client_id";
  let id = localStorage.getItem(key);
  if (!id) {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    id = `dashboard-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    localStorage.setItem(key, id);
  }
  return id;
}

export const api = new ApiClient({ store: new LocalTokenStore(), clientId: browserClientId() });

export const currentUser = new Store<UserProfile | null>(api.tokens?.user ?? null);
/** A message the login page shows once (session expired, logged out). */
export const loginNotice = new Store<string | null>(null);

export function isAdmin(user: UserProfile | null): boolean {
  return !!user?.roles?.includes("admin");
}
