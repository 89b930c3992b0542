import { useState } from "preact/hooks";
import type { SuggestedAction } from "../api/types";

/**
 * Suggestion cards as the Copilot extension shows them (API.md "suggestion cards"):
 * DECIDE is a button that sends `payload` as the user's next message (with `intent` as
 * its intent when present); RUN copies `payload`, a command; EVIDENCE (data the agent
 * needs) and FREE_SPEECH are text. `body` is text for the user.
 */
export function SuggestionCards(props: {
  actions: SuggestedAction[];
  busy: boolean;
  onDecide: (action: SuggestedAction) => void;
}) {
  const [copied, setCopied] = useState<string | null>(null);

  async function copy(command: string) {
    try {
      await navigator.clipboard.writeText(command);
      setCopied(command);
    } catch {
      setCopied(null);
      window.prompt("Copy the command:", command);
    }
  }

  return (
    <div class="actions" role="group" aria-label="Suggested actions">
      {props.actions.map((a, i) => {
        const key = `${a.type}-${a.label}-${i}`;
        if (a.type === "DECIDE") {
          return (
            <button
              key={key}
              type="button"
              class="secondary"
              data-card="DECIDE"
              disabled={props.busy}
              title={a.body ?? undefined}
              onClick={() => props.onDecide(a)}
            >
              {a.label}
            </button>
          );
        }
        if (a.type === "RUN" && a.payload) {
          const command = a.payload;
          return (
            <button
              key={key}
              type="button"
              class="secondary run"
              data-card="RUN"
              title={a.body ?? "Copy the command"}
              onClick={() => copy(command)}
            >
              {a.label}: <code>{command}</code>
              <span class="muted small">{copied === command ? " (copied)" : " (copy)"}</span>
            </button>
          );
        }
        return (
          <p key={key} class="card-info small" data-card={a.type}>
            {a.type === "EVIDENCE" && <strong>Needed: </strong>}
            {a.label}
            {a.body && <span class="muted"> — {a.body}</span>}
          </p>
        );
      })}
    </div>
  );
}
