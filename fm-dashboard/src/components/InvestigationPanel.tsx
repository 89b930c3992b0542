import { useRef, useState } from "preact/hooks";
import type { CaseDetail, CaseUI, InvestigationView, SuggestedAction } from "../api/types";
import { MILESTONES } from "../api/types";
import { StateBadge, humanize } from "./common";
import { EvidenceList } from "./EvidenceList";
import { SuggestionCards } from "./SuggestionCards";

/** The `investigation` of the last turn (TurnResponse or the SSE `state` event). */
export type TurnInvestigation = InvestigationView;

export interface PendingTransition {
  toState: string;
  label: string;
}

export function InvestigationPanel(props: {
  detail: CaseDetail;
  ui: CaseUI | null;
  turnView: TurnInvestigation | null;
  actions: SuggestedAction[];
  busy: boolean;
  /** Bumped after each turn so the evidence list is read again. */
  evidenceVersion: number;
  onAction: (action: SuggestedAction) => void;
  onTransition: (toState: string, closureReason: string | null) => Promise<void>;
}) {
  const { detail, ui } = props;
  const [pending, setPending] = useState<PendingTransition | null>(null);
  const [reason, setReason] = useState("");
  const dialog = useRef<HTMLDialogElement>(null);
  const done = new Set(detail.milestones_completed ?? []);
  const milestones = [
    ...MILESTONES,
    ...(detail.pending_milestones ?? []).filter((m) => !MILESTONES.includes(m)),
  ];
  // The side-panel view has hypotheses while investigating; in an inquiry the last turn
  // carries them.
  const hypotheses = ui?.active_hypotheses?.length
    ? ui.active_hypotheses
    : (props.turnView?.hypotheses ?? []);
  const conclusion = ui?.working_conclusion?.summary ?? props.turnView?.working_conclusion ?? null;
  const nextStates = detail.valid_next_states ?? ui?.valid_next_states ?? [];
  const problem = ui?.problem_statement ?? ui?.inquiry?.proposed_problem_statement ?? null;

  function ask(toState: string, label: string) {
    setPending({ toState, label });
    setReason("");
    dialog.current?.showModal();
  }

  async function confirm(e: Event) {
    e.preventDefault();
    if (!pending) return;
    await props.onTransition(pending.toState, pending.toState === "closed" ? reason || null : null);
    dialog.current?.close();
    setPending(null);
  }

  return (
    <aside class="investigation" aria-label="Investigation">
      <h2>Investigation</h2>
      <p>
        State: <StateBadge state={detail.state} />
        {detail.current_stage && <span class="muted small"> · stage {detail.current_stage}</span>}
      </p>
      {problem && (
        <p class="small">
          <strong>Problem:</strong> {problem}
        </p>
      )}
      {conclusion && (
        <p class="small">
          <strong>Working conclusion:</strong> {conclusion}
          {ui?.working_conclusion?.confidence !== undefined &&
            ` (${Math.round(ui.working_conclusion.confidence * 100)}%)`}
        </p>
      )}
      {props.turnView?.degraded && (
        <p class="notice small">No LLM provider answered: this answer is runbook passages only.</p>
      )}
      {ui?.root_cause?.description && (
        <p class="small">
          <strong>Root cause:</strong> {ui.root_cause.description}
        </p>
      )}
      <h3>Milestones</h3>
      <ul class="milestones" aria-label="Milestones">
        {milestones.map((m) => (
          <li key={m} class={done.has(m) ? "done" : ""}>
            <span aria-hidden="true">{done.has(m) ? "✓" : "○"}</span> {humanize(m)}
            <span class="sr-only">{done.has(m) ? " (done)" : " (pending)"}</span>
          </li>
        ))}
      </ul>
      <h3>Hypotheses</h3>
      {hypotheses.length === 0 ? (
        <p class="muted small">
          {detail.hypothesis_count ? `${detail.hypothesis_count} recorded.` : "None yet."}
        </p>
      ) : (
        <ul class="hypotheses" aria-label="Hypotheses">
          {hypotheses.map((h) => (
            <li key={h.hypothesis_id}>
              <span>{h.text}</span>
              <span class="muted small">
                {" "}
                {h.state} · {Math.round(h.likelihood * 100)}%
              </span>
              <progress max={1} value={h.likelihood} aria-label={`Likelihood of ${h.text}`} />
            </li>
          ))}
        </ul>
      )}
      <EvidenceList caseId={detail.case_id} version={props.evidenceVersion} />
      {props.actions.length === 0 && (ui?.next_actions?.length ?? 0) > 0 && (
        <>
          <h3>Next steps</h3>
          <SuggestionCards
            actions={ui!.next_actions!.map((text) => ({ label: text, type: "DECIDE", payload: text }))}
            busy={props.busy}
            onDecide={props.onAction}
          />
        </>
      )}
      {props.actions.length > 0 && (
        <>
          <h3>Suggested next steps</h3>
          <SuggestionCards actions={props.actions} busy={props.busy} onDecide={props.onAction} />
        </>
      )}
      {nextStates.length > 0 && (
        <>
          <h3>Change state</h3>
          <div class="actions" role="group" aria-label="State changes">
            {nextStates.map((s) => (
              <button
                key={s}
                type="button"
                class="warn"
                disabled={props.busy}
                onClick={() => ask(s, `Mark as ${s}`)}
              >
                Mark as {s}
              </button>
            ))}
          </div>
        </>
      )}
      <dialog ref={dialog} aria-labelledby="transition-title" onClose={() => setPending(null)}>
        <form method="dialog" onSubmit={confirm}>
          <h2 id="transition-title">Change the case state?</h2>
          {pending && (
            <p>
              {pending.label}: the case goes from <StateBadge state={detail.state} /> to{" "}
              <StateBadge state={pending.toState} />.
              {(pending.toState === "resolved" || pending.toState === "closed") &&
                " This is final: the case cannot be reopened."}
            </p>
          )}
          {pending?.toState === "closed" && (
            <label>
              Closure reason (optional)
              <input value={reason} maxLength={1000} onInput={(e) => setReason(e.currentTarget.value)} />
            </label>
          )}
          <div class="row">
            <button type="submit">Confirm</button>
            <button type="button" class="secondary" onClick={() => dialog.current?.close()}>
              Cancel
            </button>
          </div>
        </form>
      </dialog>
    </aside>
  );
}
