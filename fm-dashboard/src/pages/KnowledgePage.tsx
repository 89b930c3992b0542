import { useEffect, useRef, useState } from "preact/hooks";
import { sleep } from "../api/client";
import type { DocumentList, KnowledgeDocument, SearchResponse } from "../api/types";
import { uploadWithProgress } from "../api/upload";
import { ErrorBanner, Spinner, errorMessage, formatBytes, formatTime } from "../components/common";
import { api, currentUser, isAdmin, useStore } from "../state";

const DOC_TYPES = ["runbook", "troubleshooting_guide", "documentation", "playbook", "reference", "other"];

interface UploadItem {
  id: number;
  name: string;
  size: number;
  progress: number;
  phase: "uploading" | "processing" | "processed" | "failed";
  error?: string;
  documentId?: string;
}

let nextUploadId = 1;

export function KnowledgePage() {
  const user = useStore(currentUser);
  const admin = isAdmin(user);
  const [docs, setDocs] = useState<DocumentList | null>(null);
  const [listError, setListError] = useState<unknown>(null);
  const [scopeFilter, setScopeFilter] = useState("");
  const [typeFilter, setTypeFilter] = useState("");
  const [q, setQ] = useState("");
  const [reload, setReload] = useState(0);

  const [uploads, setUploads] = useState<UploadItem[]>([]);
  const [docType, setDocType] = useState("runbook");
  const [scope, setScope] = useState("personal");
  const [tags, setTags] = useState("");
  const [dragging, setDragging] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  // Status polling stops when the user leaves the page.
  const alive = useRef(new AbortController());
  useEffect(() => {
    const ctrl = new AbortController();
    alive.current = ctrl;
    return () => ctrl.abort();
  }, []);

  const [query, setQuery] = useState("");
  const [mode, setMode] = useState("semantic");
  const [results, setResults] = useState<SearchResponse | null>(null);
  const [searchError, setSearchError] = useState<unknown>(null);
  const [searching, setSearching] = useState(false);

  useEffect(() => {
    const params = new URLSearchParams({ limit: "100", offset: "0" });
    if (scopeFilter) params.set("scope", scopeFilter);
    if (typeFilter) params.set("document_type", typeFilter);
    if (q.trim()) params.set("q", q.trim());
    const ctrl = new AbortController();
    setListError(null);
    api
      .call<DocumentList>(`/api/v1/knowledge/documents?${params}`, { signal: ctrl.signal })
      .then(setDocs)
      .catch((err) => {
        if (!ctrl.signal.aborted) setListError(err);
      });
    return () => ctrl.abort();
  }, [scopeFilter, typeFilter, q, reload]);

  const patch = (id: number, changes: Partial<UploadItem>) =>
    setUploads((prev) => prev.map((u) => (u.id === id ? { ...u, ...changes } : u)));

  async function uploadOne(file: File) {
    const id = nextUploadId++;
    setUploads((prev) => [
      { id, name: file.name, size: file.size, progress: 0, phase: "uploading" },
      ...prev,
    ]);
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("title", file.name.replace(/\.[^.]+$/, "") || file.name);
    form.append("document_type", docType);
    form.append("scope", scope);
    if (tags.trim()) form.append("tags", tags.trim());
    try {
      const res = await uploadWithProgress<{ document_id: string }>(
        api,
        "/api/v1/knowledge/documents",
        form,
        (f) => patch(id, { progress: f }),
        alive.current.signal,
      );
      const documentId = res.body.document_id;
      patch(id, { phase: "processing", progress: 1, documentId });
      setReload((n) => n + 1);
      // The worker extracts, chunks and embeds it; poll until it is done either way.
      const deadline = Date.now() + 10 * 60_000;
      for (;;) {
        const doc = await api.call<KnowledgeDocument>(
          `/api/v1/knowledge/documents/${encodeURIComponent(documentId)}`,
          { signal: alive.current.signal },
        );
        if (doc.status === "processed") {
          patch(id, { phase: "processed" });
          break;
        }
        if (doc.status === "failed") {
          patch(id, { phase: "failed", error: doc.error || "processing failed" });
          break;
        }
        if (Date.now() > deadline) {
          patch(id, { phase: "failed", error: "still processing after 10 minutes" });
          break;
        }
        await sleep(1000, alive.current.signal);
      }
      setReload((n) => n + 1);
    } catch (err) {
      if (alive.current.signal.aborted) return;
      patch(id, { phase: "failed", error: errorMessage(err) });
    }
  }

  function uploadAll(files: FileList | File[] | null) {
    if (!files) return;
    for (const f of Array.from(files)) void uploadOne(f);
    if (fileInput.current) fileInput.current.value = "";
  }

  async function remove(doc: KnowledgeDocument) {
    if (!window.confirm(`Delete "${doc.title}" from the knowledge base?`)) return;
    try {
      await api.call(`/api/v1/knowledge/documents/${encodeURIComponent(doc.document_id)}`, {
        method: "DELETE",
      });
      setResults((r) =>
        r ? { ...r, results: r.results.filter((x) => x.document_id !== doc.document_id) } : r,
      );
      setReload((n) => n + 1);
    } catch (err) {
      setListError(err);
    }
  }

  async function search(e: Event) {
    e.preventDefault();
    if (!query.trim()) return;
    setSearching(true);
    setSearchError(null);
    try {
      setResults(
        await api.call<SearchResponse>("/api/v1/knowledge/search", {
          method: "POST",
          json: { query: query.trim(), limit: 10, mode },
        }),
      );
    } catch (err) {
      setSearchError(err);
    } finally {
      setSearching(false);
    }
  }

  return (
    <div class="page knowledge">
      <h1>Knowledge base</h1>
      <section class="panel" aria-labelledby="search-title">
        <h2 id="search-title">Search</h2>
        <form class="filters" role="search" aria-label="Knowledge search" onSubmit={search}>
          <label class="grow">
            Search the knowledge base
            <input
              type="search"
              value={query}
              maxLength={4000}
              placeholder="e.g. etcd has no leader"
              onInput={(e) => setQuery(e.currentTarget.value)}
            />
          </label>
          <label>
            Mode
            <select aria-label="Mode" value={mode} onChange={(e) => setMode(e.currentTarget.value)}>
              <option value="semantic">semantic</option>
              <option value="hybrid">hybrid</option>
            </select>
          </label>
          <button type="submit" disabled={searching}>
            Search
          </button>
        </form>
        <ErrorBanner error={searchError} />
        {results && (
          <div aria-label="Search results" role="region">
            <p class="muted small" role="status">
              {results.results.length} passage{results.results.length === 1 ? "" : "s"}
              {results.took_ms !== undefined ? ` in ${Math.round(results.took_ms)} ms` : ""}
            </p>
            <ol class="results">
              {results.results.map((r) => (
                <li key={r.chunk_id}>
                  <a
                    href={`/knowledge/${encodeURIComponent(r.document_id)}?${new URLSearchParams({
                      chunk: r.chunk_id,
                      hl: r.content.slice(0, 300),
                    })}`}
                  >
                    {r.title}
                  </a>{" "}
                  <span class="score" title="similarity score">
                    score {r.score.toFixed(3)}
                  </span>{" "}
                  <span class="muted small">{r.scope}</span>
                  <p class="snippet">
                    {r.content.length > 600 ? `${r.content.slice(0, 600)}…` : r.content}
                  </p>
                </li>
              ))}
            </ol>
          </div>
        )}
      </section>

      <section class="panel" aria-labelledby="upload-title">
        <h2 id="upload-title">Upload documents</h2>
        <div
          class={`dropzone${dragging ? " dragging" : ""}`}
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={(e) => {
            e.preventDefault();
            setDragging(false);
            uploadAll(e.dataTransfer?.files ?? null);
          }}
        >
          <div class="filters">
            <label>
              Document type
              <select aria-label="Document type" value={docType} onChange={(e) => setDocType(e.currentTarget.value)}>
                {DOC_TYPES.map((t) => (
                  <option key={t} value={t}>
                    {t.replace(/_/g, " ")}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Scope
              <select aria-label="Scope" value={scope} onChange={(e) => setScope(e.currentTarget.value)}>
                <option value="personal">personal (only you)</option>
                {admin && <option value="global">global (everyone)</option>}
              </select>
            </label>
            <label>
              Tags
              <input value={tags} placeholder="comma, separated" onInput={(e) => setTags(e.currentTarget.value)} />
            </label>
            <label class="file-button">
              <input
                ref={fileInput}
                type="file"
                multiple
                aria-label="Choose documents to upload"
                onChange={(e) => uploadAll(e.currentTarget.files)}
              />
              <span aria-hidden="true">Choose files…</span>
            </label>
          </div>
          <p class="muted small">
            Or drop files here. Markdown, text, PDF, HTML, logs, JSON, YAML and CSV are indexed.
          </p>
        </div>
        {uploads.length > 0 && (
          <ul class="uploads" aria-label="Uploads">
            {uploads.map((u) => (
              <li key={u.id} data-phase={u.phase}>
                <span class="grow">
                  {u.name} <span class="muted small">({formatBytes(u.size)})</span>
                </span>
                {u.phase === "uploading" && (
                  <progress max={1} value={u.progress} aria-label={`Uploading ${u.name}`} />
                )}
                <span class={`status status-${u.phase}`} role="status">
                  {u.phase === "uploading" && `uploading ${Math.round(u.progress * 100)}%`}
                  {u.phase === "processing" && "processing…"}
                  {u.phase === "processed" && "processed"}
                  {u.phase === "failed" && `failed: ${u.error}`}
                </span>
              </li>
            ))}
          </ul>
        )}
      </section>

      <section class="panel" aria-labelledby="docs-title">
        <h2 id="docs-title">Documents</h2>
        <form class="filters" aria-label="Filter documents" onSubmit={(e) => e.preventDefault()}>
          <label>
            Filter by title
            <input type="search" value={q} onInput={(e) => setQ(e.currentTarget.value)} />
          </label>
          <label>
            Filter by scope
            <select aria-label="Filter by scope" value={scopeFilter} onChange={(e) => setScopeFilter(e.currentTarget.value)}>
              <option value="">all I can see</option>
              <option value="personal">personal</option>
              <option value="global">global</option>
              <option value="case">case</option>
            </select>
          </label>
          <label>
            Filter by type
            <select aria-label="Filter by type" value={typeFilter} onChange={(e) => setTypeFilter(e.currentTarget.value)}>
              <option value="">all types</option>
              {DOC_TYPES.map((t) => (
                <option key={t} value={t}>
                  {t.replace(/_/g, " ")}
                </option>
              ))}
            </select>
          </label>
        </form>
        <ErrorBanner error={listError} />
        {!docs && !listError && <Spinner label="Loading documents" />}
        {docs && docs.documents.length === 0 && <p class="empty">No documents yet.</p>}
        {docs && docs.documents.length > 0 && (
          <div class="table-wrap">
            <table aria-label="Documents">
              <thead>
                <tr>
                  <th scope="col">Title</th>
                  <th scope="col">Type</th>
                  <th scope="col">Scope</th>
                  <th scope="col">Status</th>
                  <th scope="col">Added</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {docs.documents.map((d) => {
                  const canDelete = d.scope !== "global" || admin;
                  return (
                    <tr key={d.document_id}>
                      <td>
                        <a href={`/knowledge/${encodeURIComponent(d.document_id)}`}>{d.title}</a>
                      </td>
                      <td>{d.document_type}</td>
                      <td>{d.scope}</td>
                      <td>
                        <span class={`status status-${d.status}`}>
                          {d.status}
                          {d.status === "processed" && d.chunk_count ? ` · ${d.chunk_count} chunks` : ""}
                          {d.status === "failed" && d.error ? `: ${d.error}` : ""}
                        </span>
                      </td>
                      <td class="small">{formatTime(d.created_at)}</td>
                      <td>
                        {canDelete && (
                          <button
                            type="button"
                            class="danger small"
                            aria-label={`Delete ${d.title}`}
                            onClick={() => remove(d)}
                          >
                            Delete
                          </button>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </div>
  );
}
