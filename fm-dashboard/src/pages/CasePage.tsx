import { useEffect, useRef, useState } from "preact/hooks";
import { errorFromResponse } from "../api/client";
import { submitTurn, type TurnInput } from "../api/turns";
import type {
  Capabilities,
  CaseDetail,
  CaseUI,
  Citation,
  MessagesPage,
  SuggestedAction,
} from "../api/types";
import { Composer } from "../components/Composer";
import { Conversation, fromMessage, type ChatEntry } from "../components/Conversation";
import { InvestigationPanel, type TurnInvestigation } from "../components/InvestigationPanel";
import { ReportsPanel } from "../components/ReportsPanel";
import { ErrorBanner, Spinner, StateBadge, errorMessage } from "../components/common";
import { navigate } from "../router";
import { api } from "../state";

export function CasePage({ caseId }: { caseId: string }) {
  const path = `/api/v1/cases/${encodeURIComponent(caseId)}`;
  const [detail, setDetail] = useState<CaseDetail | null>(null);
  const [ui, setUi] = useState<CaseUI | null>(null);
  const [entries, setEntries] = useState<ChatEntry[]>([]);
  const [actions, setActions] = useState<SuggestedAction[]>([]);
  const [turnView, setTurnView] = useState<TurnInvestigation | null>(null);
  const [turnsSent, setTurnsSent] = useState(0);
  const [limits, setLimits] = useState<Capabilities["limits"]>();
  const [error, setError] = useState<unknown>(null);
  const [notFound, setNotFound] = useState(false);
  const [sending, setSending] = useState(false);
  // Nothing is sent before the conversation is read: a late read would replace it.
  const [historyLoaded, setHistoryLoaded] = useState(false);
  const [renaming, setRenaming] = useState(false);
  const [title, setTitle] = useState("");
  const [showPanel, setShowPanel] = useState(false);
  const abort = useRef<AbortController | null>(null);

  async function refreshCase() {
    const d = await api.call<CaseDetail>(path);
    setDetail(d);
    api
      .call<CaseUI>(`${path}/ui`)
      .then(setUi)
      .catch(() => setUi(null));
  }

  useEffect(() => {
    setDetail(null);
    setEntries([]);
    setActions([]);
    setTurnView(null);
    setError(null);
    setNotFound(false);
    setHistoryLoaded(false);
    refreshCase().catch((err) => {
      if (err?.status === 404) setNotFound(true);
      else setError(err);
    });
    api
      .call<MessagesPage>(`${path}/messages?limit=100&offset=0`)
      .then((page) => setEntries(page.messages.map(fromMessage)))
      .catch(() => undefined)
      .finally(() => setHistoryLoaded(true));
    api
      .call<Capabilities>("/v1/meta/capabilities", { auth: false })
      .then((c) => setLimits(c.limits))
      .catch(() => undefined);
    return () => abort.current?.abort();
  }, [caseId]);

  async function send(input: TurnInput): Promise<boolean> {
    const userText = [input.query?.trim(), input.pastedContent?.trim() ? "(pasted logs)" : ""]
      .filter(Boolean)
      .join("\n");
    const userKey = `u-${Date.now()}`;
    const answerKey = `a-${Date.now()}`;
    setEntries((prev) => [
      ...prev,
      {
        key: userKey,
        role: "user",
        content: userText || "(attachments)",
        attachments: input.files?.map((f) => f.name),
      },
      { key: answerKey, role: "assistant", content: "", streaming: true, citations: [] },
    ]);
    const update = (fn: (e: ChatEntry) => ChatEntry) =>
      setEntries((prev) => prev.map((e) => (e.key === answerKey ? fn(e) : e)));
    setSending(true);
    setError(null);
    const ctrl = new AbortController();
    abort.current = ctrl;
    try {
      const result = await submitTurn(
        api,
        caseId,
        input,
        {
          onToken: (text) => update((e) => ({ ...e, content: e.content + text })),
          onCitation: (c: Citation) =>
            update((e) => ({ ...e, citations: [...(e.citations ?? []), c] })),
          onState: (s) => {
            const state = (s.case_state ?? s.state) as string | undefined;
            if (state) setDetail((d) => (d ? { ...d, state: state as CaseDetail["state"] } : d));
            if (Array.isArray(s.suggested_actions))
              setActions(s.suggested_actions as SuggestedAction[]);
            if (s.investigation) setTurnView(s.investigation as TurnInvestigation);
          },
          onQueued: () => update((e) => ({ ...e, content: "_Queued; the answer follows shortly…_" })),
        },
        ctrl.signal,
      );
      update((e) => ({
        ...e,
        content: result.agent_response || e.content,
        citations: result.citations?.length ? result.citations : e.citations,
        streaming: false,
      }));
      setActions(result.suggested_actions ?? []);
      if (result.investigation) setTurnView(result.investigation as TurnInvestigation);
      await refreshCase().catch(() => undefined);
      setTurnsSent((n) => n + 1);
      return true;
    } catch (err) {
      update((e) => ({ ...e, streaming: false, error: errorMessage(err) }));
      return false;
    } finally {
      setSending(false);
    }
  }

  /** The header's state change, sent as the extension sends it: a turn whose intent is a
   *  confirmed status_transition (the agent applies it through the state machine and
   *  answers in the conversation; a refused one is explained there). */
  async function transition(toState: string, closureReason: string | null) {
    setError(null);
    await send({
      query: `Change status to ${toState}`,
      intentType: "status_transition",
      intentData: {
        type: "status_transition",
        from_state: detail?.state,
        to_state: toState,
        user_confirmed: true,
        ...(closureReason ? { closure_reason: closureReason } : {}),
      },
    });
  }

  /** A DECIDE card: its payload is the next message, its intent the turn's intent. */
  function onAction(action: SuggestedAction) {
    if (action.type !== "DECIDE") return;
    const intent = action.intent ?? undefined;
    send({
      query: action.payload || action.label,
      intentType: intent ? String(intent.type) : undefined,
      intentData: intent,
    });
  }

  async function rename(e: Event) {
    e.preventDefault();
    if (!detail || !title.trim()) return;
    setError(null);
    try {
      const headers: Record<string, string> = {};
      if (detail.version !== undefined) headers["If-Match"] = String(detail.version);
      const updated = await api.call<CaseDetail>(path, {
        method: "PUT",
        json: { title: title.trim() },
        headers,
      });
      setDetail((d) => (d ? { ...d, ...updated } : updated));
      setRenaming(false);
    } catch (err) {
      setError(err);
    }
  }

  async function archive() {
    setError(null);
    try {
      const res = await api.send(`${path}/archive`, { method: "POST" });
      if (!res.ok) throw await errorFromResponse(res);
      navigate("/cases");
    } catch (err) {
      setError(err);
    }
  }

  async function remove() {
    if (!detail) return;
    if (!window.confirm(`Delete "${detail.title}" with its messages, files and reports?`)) return;
    try {
      await api.call(path, { method: "DELETE" });
      navigate("/cases");
    } catch (err) {
      setError(err);
    }
  }

  if (notFound) {
    return (
      <section class="panel">
        <h1>Case not found</h1>
        <p>
          This case does not exist or is not yours. <a href="/cases">Back to your cases</a>.
        </p>
      </section>
    );
  }
  if (!detail) return error ? <ErrorBanner error={error} /> : <Spinner label="Loading the case" />;

  return (
    <div class={`case-page${showPanel ? " panel-open" : ""}`}>
      <div class="case-head">
        {renaming ? (
          <form class="inline-form" onSubmit={rename} aria-label="Rename case">
            <label for="case-title" class="sr-only">
              Case title
            </label>
            <input
              id="case-title"
              value={title}
              maxLength={200}
              required
              onInput={(e) => setTitle(e.currentTarget.value)}
            />
            <button type="submit">Save</button>
            <button type="button" class="secondary" onClick={() => setRenaming(false)}>
              Cancel
            </button>
          </form>
        ) : (
          <h1>
            {detail.title} <StateBadge state={detail.state} />
          </h1>
        )}
        <div class="row wrap">
          {!renaming && (
            <button
              type="button"
              class="secondary"
              onClick={() => {
                setTitle(detail.title);
                setRenaming(true);
              }}
            >
              Rename
            </button>
          )}
          <button type="button" class="secondary" onClick={archive}>
            Archive
          </button>
          <button type="button" class="danger" onClick={remove}>
            Delete
          </button>
          <button
            type="button"
            class="secondary panel-toggle"
            aria-expanded={showPanel}
            aria-controls="investigation"
            onClick={() => setShowPanel(!showPanel)}
          >
            {showPanel ? "Hide investigation" : "Show investigation"}
          </button>
        </div>
      </div>
      <ErrorBanner error={error} />
      <div class="case-body">
        <div class="case-main">
          <Conversation entries={entries} />
          <Composer
            disabled={detail.is_terminal}
            busy={sending || !historyLoaded}
            limits={limits}
            onSend={send}
          />
          {detail.is_terminal && (
            <p class="muted small">This case is {detail.state}; it takes no new messages.</p>
          )}
          <ReportsPanel caseId={caseId} caseTitle={detail.title} />
        </div>
        <div id="investigation" class="case-side">
          <InvestigationPanel
            detail={detail}
            ui={ui}
            turnView={turnView}
            evidenceVersion={turnsSent}
            actions={actions}
            busy={sending || !historyLoaded}
            onAction={onAction}
            onTransition={transition}
          />
        </div>
      </div>
    </div>
  );
}
