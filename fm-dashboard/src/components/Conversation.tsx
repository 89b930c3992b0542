import type { Citation, Message } from "../api/types";
import { renderMarkdown } from "../markdown";
import { formatTime } from "./common";

export interface ChatEntry {
  key: string;
  role: "user" | "assistant" | "system";
  content: string;
  createdAt?: string;
  citations?: Citation[];
  attachments?: string[];
  streaming?: boolean;
  error?: string;
}

export function fromMessage(m: Message): ChatEntry {
  const meta = (m.metadata ?? {}) as Record<string, unknown>;
  const citations = Array.isArray(meta.citations) ? (meta.citations as Citation[]) : undefined;
  const attachments = Array.isArray(meta.attachments)
    ? (meta.attachments as Array<{ filename?: string }>).map((a) => a.filename ?? "file")
    : undefined;
  return {
    key: m.message_id,
    role: m.role,
    content: m.content,
    createdAt: m.created_at,
    citations,
    attachments,
  };
}

export function citationHref(c: Citation): string {
  const params = new URLSearchParams({ chunk: c.chunk_id });
  if (c.snippet) params.set("hl", c.snippet.slice(0, 300));
  return `/knowledge/${encodeURIComponent(c.document_id)}?${params}`;
}

export function Citations({ citations }: { citations: Citation[] }) {
  if (!citations.length) return null;
  return (
    <div class="citations">
      <h3 class="small">Sources</h3>
      <ol aria-label="Sources">
        {citations.map((c, i) => (
          <li key={`${c.chunk_id}-${i}`}>
            <a href={citationHref(c)} title={c.snippet}>
              {c.title || "Untitled document"}
            </a>{" "}
            <span class="muted small">
              {c.scope} · score {typeof c.score === "number" ? c.score.toFixed(2) : c.score}
            </span>
            {c.snippet && <p class="snippet small">{c.snippet.slice(0, 220)}</p>}
          </li>
        ))}
      </ol>
    </div>
  );
}

export function Conversation({ entries }: { entries: ChatEntry[] }) {
  return (
    <div class="conversation" role="log" aria-label="Conversation" aria-live="polite">
      {entries.length === 0 && (
        <p class="empty">Describe the problem, paste a log or attach files to start.</p>
      )}
      {entries.map((e) => (
        <article
          key={e.key}
          class={`msg msg-${e.role}${e.streaming ? " streaming" : ""}`}
          aria-label={e.role === "user" ? "Your message" : "FaultMaven's answer"}
          aria-busy={e.streaming ? "true" : undefined}
        >
          <header class="msg-head small muted">
            {e.role === "user" ? "You" : e.role === "assistant" ? "FaultMaven" : "System"}
            {e.createdAt ? ` · ${formatTime(e.createdAt)}` : ""}
            {e.streaming ? " · writing…" : ""}
          </header>
          {e.role === "assistant" ? (
            <div class="md" dangerouslySetInnerHTML={{ __html: renderMarkdown(e.content) }} />
          ) : (
            <p class="plain">{e.content}</p>
          )}
          {e.attachments && e.attachments.length > 0 && (
            <p class="small muted">Attached: {e.attachments.join(", ")}</p>
          )}
          {e.error && (
            <p class="error" role="alert">
              {e.error}
            </p>
          )}
          {e.citations && <Citations citations={e.citations} />}
        </article>
      ))}
    </div>
  );
}
