import { useEffect, useState } from "preact/hooks";
import type { CaseList, CaseSummary } from "../api/types";
import { CASE_STATES } from "../api/types";
import { newIdempotencyKey } from "../api/turns";
import { ErrorBanner, Spinner, StateBadge, formatTime } from "../components/common";
import { navigate } from "../router";
import { api } from "../state";

const PAGE = 50;

export function CasesPage({ query }: { query: URLSearchParams }) {
  const q = query.get("q") ?? "";
  const state = query.get("state") ?? "";
  const archived = query.get("include_archived") === "true";
  const offset = Number(query.get("offset") ?? "0") || 0;
  const [data, setData] = useState<CaseList | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [search, setSearch] = useState(q);
  const [newTitle, setNewTitle] = useState("");
  const [creating, setCreating] = useState(false);

  useEffect(() => {
    setSearch(q);
    const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (q) params.set("q", q);
    if (state) params.set("state", state);
    if (archived) params.set("include_archived", "true");
    const ctrl = new AbortController();
    setError(null);
    api
      .call<CaseList>(`/api/v1/cases?${params}`, { signal: ctrl.signal })
      .then(setData)
      .catch((err) => {
        if (!ctrl.signal.aborted) setError(err);
      });
    return () => ctrl.abort();
  }, [q, state, archived, offset]);

  function setFilter(changes: Record<string, string | null>) {
    const next = new URLSearchParams(query);
    next.delete("offset");
    for (const [k, v] of Object.entries(changes)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    const s = next.toString();
    navigate(s ? `/cases?${s}` : "/cases", { replace: true });
  }

  async function create(e: Event) {
    e.preventDefault();
    setCreating(true);
    setError(null);
    try {
      const created = await api.call<CaseSummary>("/api/v1/cases", {
        method: "POST",
        json: { title: newTitle.trim() || null, priority: "low" },
        headers: { "Idempotency-Key": newIdempotencyKey() },
      });
      navigate(`/cases/${encodeURIComponent(created.case_id)}`);
    } catch (err) {
      setError(err);
    } finally {
      setCreating(false);
    }
  }

  return (
    <div class="page">
      <div class="page-head">
        <h1>Cases</h1>
        <form class="inline-form" onSubmit={create} aria-label="New case">
          <label class="sr-only" for="new-case-title">
            New case title
          </label>
          <input
            id="new-case-title"
            placeholder="What is going wrong? (optional title)"
            maxLength={200}
            value={newTitle}
            onInput={(e) => setNewTitle(e.currentTarget.value)}
          />
          <button type="submit" disabled={creating}>
            New case
          </button>
        </form>
      </div>
      <form
        class="filters"
        role="search"
        aria-label="Filter cases"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter({ q: search.trim() || null });
        }}
      >
        <label>
          Search cases
          <input
            type="search"
            value={search}
            onInput={(e) => setSearch(e.currentTarget.value)}
            placeholder="Title or description"
          />
        </label>
        <label>
          State
          <select aria-label="State" value={state} onChange={(e) => setFilter({ state: e.currentTarget.value })}>
            <option value="">All states</option>
            {CASE_STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label class="check">
          <input
            type="checkbox"
            checked={archived}
            onChange={(e) => setFilter({ include_archived: e.currentTarget.checked ? "true" : null })}
          />
          Include archived
        </label>
        <button type="submit" class="secondary">
          Search
        </button>
      </form>
      <ErrorBanner error={error} />
      {!data && !error && <Spinner label="Loading cases" />}
      {data && data.cases.length === 0 && (
        <p class="empty">
          {q || state ? "No case matches these filters." : "No cases yet. Start one above."}
        </p>
      )}
      {data && data.cases.length > 0 && (
        <>
          <ul class="case-list" aria-label="Cases">
            {data.cases.map((c) => (
              <li key={c.case_id}>
                <a href={`/cases/${encodeURIComponent(c.case_id)}`} class="case-link">
                  <span class="case-title">{c.title}</span>
                  <StateBadge state={c.state} />
                </a>
                <p class="muted small">
                  {c.description ? `${c.description.slice(0, 140)} · ` : ""}
                  {c.current_turn} turn{c.current_turn === 1 ? "" : "s"} · last activity{" "}
                  {formatTime(c.last_activity_at)}
                  {c.is_archived ? " · archived" : ""}
                </p>
              </li>
            ))}
          </ul>
          <nav class="pager" aria-label="Pages">
            <span class="muted">
              {data.offset + 1}-{data.offset + data.cases.length} of {data.total_count}
            </span>
            {offset > 0 && (
              <button
                type="button"
                class="secondary"
                onClick={() => setFilter({ offset: String(Math.max(0, offset - PAGE)) })}
              >
                Previous
              </button>
            )}
            {data.has_more && (
              <button
                type="button"
                class="secondary"
                onClick={() => setFilter({ offset: String(offset + PAGE) })}
              >
                Next
              </button>
            )}
          </nav>
        </>
      )}
    </div>
  );
}
