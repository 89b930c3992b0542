import { useEffect, useState } from "preact/hooks";
import type { Capabilities, DocumentList, HealthReport, LlmProvider } from "../api/types";
import { ErrorBanner, Spinner, formatBytes } from "../components/common";
import { api, currentUser, useStore } from "../state";

function providerOf(p: LlmProvider | string): { name: string; kind: string; model: string } {
  if (typeof p === "string") return { name: p, kind: "", model: "" };
  return { name: p.name, kind: p.kind, model: p.model };
}

function embeddingModel(caps: Capabilities): string | null {
  const e = caps.embeddingModel ?? caps.embedding_model ?? (caps.embeddings as unknown);
  if (typeof e === "string") return e;
  if (e && typeof e === "object") {
    const o = e as Record<string, unknown>;
    const name = o.name ?? o.model;
    const dims = o.dimensions ?? o.dims;
    return name ? `${name}${dims ? ` (${dims} dimensions)` : ""}` : null;
  }
  return null;
}

export function SettingsPage() {
  const user = useStore(currentUser);
  const [caps, setCaps] = useState<Capabilities | null>(null);
  const [health, setHealth] = useState<HealthReport | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [docModel, setDocModel] = useState<string | null>(null);

  useEffect(() => {
    // Capabilities do not name the embedding model; every processed document records it.
    api
      .call<DocumentList>("/api/v1/knowledge/documents?limit=20&offset=0")
      .then((list) => {
        const doc = list.documents.find((d) => d.status === "processed" && d.embedding_model);
        setDocModel(doc?.embedding_model ?? null);
      })
      .catch(() => setDocModel(null));
    api
      .call<Capabilities>("/v1/meta/capabilities", { auth: false })
      .then(setCaps)
      .catch(setError);
    // /health answers 503 with the same body when unhealthy: show it either way.
    api
      .send("/health", { auth: false })
      .then(async (res) => setHealth((await res.json()) as HealthReport))
      .catch(() => setHealth({ status: "unreachable", services: {}, critical: [] }));
  }, []);

  if (error) return <ErrorBanner error={error} />;
  if (!caps) return <Spinner label="Loading settings" />;
  const providers = (caps.llmProviders ?? []).map(providerOf);
  const services = Object.entries(health?.services ?? {});
  const embed = embeddingModel(caps);
  const providerHealth = (name: string) =>
    services.find(([svc]) => svc === `llm:${name}` || svc === name || svc.endsWith(`/${name}`))?.[1];
  const agentHealth = health?.services?.agent;

  return (
    <div class="page settings">
      <h1>Settings</h1>
      <section class="panel" aria-labelledby="llm-title">
        <h2 id="llm-title">LLM providers</h2>
        {providers.length === 0 ? (
          <p class="notice">
            No LLM provider is configured. The agent still answers with the best matching runbook
            passages and a log summary, but makes no diagnosis. Configure providers with
            FM_AGENT_PROVIDERS.
          </p>
        ) : (
          <div class="table-wrap">
            <table aria-label="LLM providers">
              <thead>
                <tr>
                  <th scope="col">Order</th>
                  <th scope="col">Name</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Model</th>
                  <th scope="col">Health</th>
                </tr>
              </thead>
              <tbody>
                {providers.map((p, i) => {
                  const own = providerHealth(p.name);
                  return (
                    <tr key={`${p.name}-${i}`}>
                      <td>{i + 1}</td>
                      <td>{p.name}</td>
                      <td>{p.kind}</td>
                      <td>{p.model}</td>
                      <td>
                        {own ? (
                          <span class={`status status-${own.status}`}>{own.status}</span>
                        ) : (
                          <span class="muted small">
                            not checked on its own (agent{" "}
                            <span class={`status status-${agentHealth?.status ?? "unknown"}`}>
                              {agentHealth?.status ?? "unknown"}
                            </span>
                            )
                          </span>
                        )}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
        <p class="muted small">
          Providers are tried in this order; the next takes over on a timeout, a connection
          error, a 429 or a 5xx. /health reports the agent, not each provider; an answer made
          without any provider says so on the case page.
        </p>
      </section>

      <section class="panel" aria-labelledby="health-title">
        <h2 id="health-title">System health</h2>
        {!health ? (
          <Spinner label="Checking health" />
        ) : (
          <>
            <p>
              Overall: <span class={`status status-${health.status}`}>{health.status}</span>
            </p>
            {services.length > 0 && (
              <div class="table-wrap">
                <table aria-label="Service health">
                  <thead>
                    <tr>
                      <th scope="col">Service</th>
                      <th scope="col">Status</th>
                      <th scope="col">Latency</th>
                    </tr>
                  </thead>
                  <tbody>
                    {services.map(([name, s]) => (
                      <tr key={name}>
                        <td>{name}</td>
                        <td>
                          <span class={`status status-${s.status}`}>{s.status}</span>
                        </td>
                        <td>{s.latency_ms !== undefined ? `${Math.round(s.latency_ms)} ms` : ""}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </>
        )}
      </section>

      <section class="panel" aria-labelledby="kb-title">
        <h2 id="kb-title">Knowledge and limits</h2>
        <dl class="facts">
          <dt>Embedding model</dt>
          <dd>
            {embed ??
              (docModel
                ? `${docModel} (as recorded on your processed documents)`
                : "not reported by this server (shown once a document is processed)")}
          </dd>
          <dt>Largest file</dt>
          <dd>{caps.limits?.maxFileBytes ? formatBytes(caps.limits.maxFileBytes) : "no limit reported"}</dd>
          <dt>Allowed file types</dt>
          <dd>{caps.limits?.allowedExtensions?.join(", ") || "any"}</dd>
          <dt>Documents per user</dt>
          <dd>{caps.limits?.maxDocuments ?? "no limit reported"}</dd>
          <dt>Knowledge base management</dt>
          <dd>{caps.kbManagement ?? "—"}</dd>
          <dt>Deployment</dt>
          <dd>
            {caps.deploymentMode ?? "—"}
            {caps.version ? ` · version ${caps.version}` : ""}
          </dd>
        </dl>
      </section>

      <section class="panel" aria-labelledby="account-title">
        <h2 id="account-title">Account</h2>
        <dl class="facts">
          <dt>User</dt>
          <dd>{user?.username}</dd>
          <dt>Email</dt>
          <dd>{user?.email || "—"}</dd>
          <dt>Roles</dt>
          <dd>{user?.roles?.join(", ") || "user"}</dd>
        </dl>
      </section>
    </div>
  );
}
