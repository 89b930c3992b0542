import { useRef, useState } from "preact/hooks";
import type { Capabilities } from "../api/types";
import type { TurnInput } from "../api/turns";
import { formatBytes } from "./common";

export function Composer(props: {
  disabled: boolean;
  busy: boolean;
  limits?: Capabilities["limits"];
  onSend: (input: TurnInput) => Promise<boolean>;
}) {
  const [query, setQuery] = useState("");
  const [pasted, setPasted] = useState("");
  const [showPaste, setShowPaste] = useState(false);
  const [files, setFiles] = useState<File[]>([]);
  const [dragging, setDragging] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);

  function addFiles(list: FileList | File[] | null) {
    if (!list) return;
    // Only the size is checked here: which evidence types a case takes (logs, configs,
    // screenshots) is the evidence service's call, and its 415 says so clearly.
    const max = props.limits?.maxFileBytes;
    const accepted: File[] = [];
    const refused: string[] = [];
    for (const f of Array.from(list)) {
      if (max && f.size > max) refused.push(`${f.name} is larger than ${formatBytes(max)}`);
      else accepted.push(f);
    }
    setProblem(refused.length ? refused.join("; ") : null);
    setFiles((prev) => [...prev, ...accepted]);
  }

  async function submit(e: Event) {
    e.preventDefault();
    if (!query.trim() && !pasted.trim() && files.length === 0) {
      setProblem("Write a message, paste a log or attach a file first.");
      return;
    }
    setProblem(null);
    const ok = await props.onSend({ query, pastedContent: pasted, files });
    if (ok) {
      setQuery("");
      setPasted("");
      setFiles([]);
      setShowPaste(false);
      if (fileInput.current) fileInput.current.value = "";
    }
  }

  return (
    <form
      class={`composer${dragging ? " dragging" : ""}`}
      aria-label="New turn"
      onSubmit={submit}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        addFiles(e.dataTransfer?.files ?? null);
      }}
    >
      <label for="turn-query" class="sr-only">
        Message
      </label>
      <textarea
        id="turn-query"
        rows={3}
        placeholder="Ask, describe a symptom, or drop log files here"
        value={query}
        disabled={props.disabled}
        onInput={(e) => setQuery(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit(e);
        }}
      />
      {showPaste && (
        <>
          <label for="turn-pasted">Pasted logs</label>
          <textarea
            id="turn-pasted"
            class="mono"
            rows={6}
            placeholder="Paste log lines, a stack trace or a config"
            value={pasted}
            disabled={props.disabled}
            onInput={(e) => setPasted(e.currentTarget.value)}
          />
        </>
      )}
      {files.length > 0 && (
        <ul class="chips" aria-label="Attached files">
          {files.map((f, i) => (
            <li key={`${f.name}-${i}`}>
              {f.name} <span class="muted">({formatBytes(f.size)})</span>
              <button
                type="button"
                class="link"
                aria-label={`Remove ${f.name}`}
                onClick={() => setFiles(files.filter((_, j) => j !== i))}
              >
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
      <div class="composer-actions">
        <label class="file-button">
          <input
            ref={fileInput}
            type="file"
            multiple
            aria-label="Attach files"
            disabled={props.disabled}
            onChange={(e) => addFiles(e.currentTarget.files)}
          />
          <span aria-hidden="true">Attach files</span>
        </label>
        <button
          type="button"
          class="secondary"
          aria-expanded={showPaste}
          onClick={() => setShowPaste(!showPaste)}
        >
          {showPaste ? "Hide pasted logs" : "Paste logs"}
        </button>
        <span class="grow small muted">Drop files anywhere here · Ctrl+Enter sends</span>
        <button type="submit" disabled={props.disabled || props.busy}>
          {props.busy ? "Sending…" : "Send"}
        </button>
      </div>
    </form>
  );
}
