import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiError, errorFromResponse } from "../api/client";
import type { Report } from "../api/types";
import { renderMarkdown } from "../markdown";
import { api } from "../state";
import { ErrorBanner, formatTime } from "./common";

interface ReportList {
  reports: Report[];
  total_count: number;
}

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60) || "case";
}

export function ReportsPanel({ caseId, caseTitle }: { caseId: string; caseTitle: string }) {
  const base = `/api/v1/cases/${encodeURIComponent(caseId)}/reports`;
  const [reports, setReports] = useState<Report[]>([]);
  const [open, setOpen] = useState<Report | null>(null);
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);

  async function load(): Promise<Report[]> {
    const list = await api.call<ReportList | Report[]>(base);
    const items = Array.isArray(list) ? list : list.reports;
    setReports(items);
    return items;
  }

  async function show(reportId: string) {
    setError(null);
    try {
      setOpen(await api.call<Report>(`${base}/${encodeURIComponent(reportId)}`));
    } catch (err) {
      setError(err);
    }
  }

  const [ctrl, setCtrl] = useState(() => new AbortController());
  useEffect(() => {
    setOpen(null);
    load().catch(() => setReports([]));
    const c = new AbortController();
    setCtrl(c);
    return () => c.abort();
  }, [caseId]);

  async function generate() {
    setBusy(true);
    setError(null);
    setStatus("Queued…");
    try {
      const res = await api.send(base, { method: "POST", json: { report_type: "postmortem" } });
      if (!res.ok) {
        throw await errorFromResponse(res);
      }
      const created = (await res.json()) as { report_id?: string };
      const location = res.headers.get("Location");
      if (location) {
        setStatus("Writing the post-mortem…");
        await api.pollJob(location, { intervalMs: 1000, timeoutMs: 180_000, signal: ctrl.signal });
      }
      const items = await load();
      const id = created.report_id ?? items[0]?.report_id;
      if (!id) throw new ApiError(0, "NO_REPORT", "The report finished but cannot be found.");
      await show(id);
      setStatus(null);
    } catch (err) {
      if (ctrl.signal.aborted) return;
      setStatus(null);
      setError(err);
      load().catch(() => undefined);
    } finally {
      setBusy(false);
    }
  }

  const markdown = open?.content ?? "";
  const href = useMemo(
    () =>
      markdown
        ? URL.createObjectURL(new Blob([markdown], { type: "text/markdown;charset=utf-8" }))
        : null,
    [markdown],
  );
  useEffect(
    () => () => {
      if (href) URL.revokeObjectURL(href);
    },
    [href],
  );

  return (
    <section class="reports" aria-labelledby="reports-title">
      <div class="row">
        <h2 id="reports-title">Post-mortem</h2>
        <button type="button" onClick={generate} disabled={busy}>
          {busy ? "Generating…" : "Generate post-mortem"}
        </button>
      </div>
      {status && (
        <p role="status" class="muted">
          <span class="spinner" aria-hidden="true" /> {status}
        </p>
      )}
      <ErrorBanner error={error} />
      {reports.length > 0 && (
        <ul class="report-list" aria-label="Reports">
          {reports.map((r) => (
            <li key={r.report_id}>
              <button type="button" class="link" onClick={() => show(r.report_id)}>
                {r.report_type ?? "report"} · {formatTime(r.created_at)}
              </button>{" "}
              <span class="muted small">{r.status}</span>
            </li>
          ))}
        </ul>
      )}
      {open && (
        <article class="report" aria-label="Post-mortem report">
          <div class="row">
            <span class="muted small">
              {open.report_type} · {formatTime(open.created_at)}
            </span>
            {href && (
              <a class="button secondary" href={href} download={`postmortem-${slug(caseTitle)}.md`}>
                Download .md
              </a>
            )}
          </div>
          {open.status === "failed" ? (
            <p class="error" role="alert">
              The report failed: {(open as { error?: string }).error ?? "unknown reason"}
            </p>
          ) : (
            <div class="md" dangerouslySetInnerHTML={{ __html: renderMarkdown(markdown) }} />
          )}
        </article>
      )}
    </section>
  );
}
