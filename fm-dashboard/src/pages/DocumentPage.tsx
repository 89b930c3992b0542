import { useEffect, useRef, useState } from "preact/hooks";
import type { KnowledgeDocument } from "../api/types";
import { ErrorBanner, Spinner, formatBytes, formatTime } from "../components/common";
import { findPassage } from "../passage";
import { api } from "../state";

export function DocumentPage({ documentId, query }: { documentId: string; query: URLSearchParams }) {
  const [doc, setDoc] = useState<KnowledgeDocument | null>(null);
  const [error, setError] = useState<unknown>(null);
  const mark = useRef<HTMLElement>(null);
  const hl = query.get("hl") ?? "";
  const chunk = query.get("chunk");

  useEffect(() => {
    setDoc(null);
    setError(null);
    api
      .call<KnowledgeDocument>(`/api/v1/knowledge/documents/${encodeURIComponent(documentId)}`)
      .then(setDoc)
      .catch(setError);
  }, [documentId]);

  useEffect(() => {
    mark.current?.scrollIntoView({ block: "center" });
    mark.current?.focus();
  }, [doc, hl]);

  if (error) {
    return (
      <section class="panel">
        <h1>Document</h1>
        <ErrorBanner error={error} />
        <p>
          <a href="/knowledge">Back to the knowledge base</a>
        </p>
      </section>
    );
  }
  if (!doc) return <Spinner label="Loading the document" />;
  const content = doc.content ?? "";
  const span = hl ? findPassage(content, hl) : null;
  const meta = doc as KnowledgeDocument & { filename?: string; size_bytes?: number };

  return (
    <div class="page">
      <p>
        <a href="/knowledge">← Knowledge base</a>
      </p>
      <h1>{doc.title}</h1>
      <p class="muted small">
        {doc.document_type} · {doc.scope} · {doc.status}
        {doc.chunk_count ? ` · ${doc.chunk_count} chunks` : ""}
        {meta.filename ? ` · ${meta.filename}` : ""}
        {meta.size_bytes ? ` (${formatBytes(meta.size_bytes)})` : ""} · added {formatTime(doc.created_at)}
      </p>
      {doc.status === "failed" && (
        <p class="error" role="alert">
          Processing failed: {doc.error ?? "unknown reason"}
        </p>
      )}
      {hl && !span && (
        <p class="notice" role="status">
          The cited passage{chunk ? ` (${chunk})` : ""} is not in the stored text any more.
        </p>
      )}
      <pre class="doc-content" aria-label="Document content">
        {span ? (
          <>
            {content.slice(0, span[0])}
            <mark ref={mark} id="cited-passage" tabIndex={-1} aria-label="Cited passage">
              {content.slice(span[0], span[1])}
            </mark>
            {content.slice(span[1])}
          </>
        ) : (
          content || "(no text extracted)"
        )}
      </pre>
    </div>
  );
}
