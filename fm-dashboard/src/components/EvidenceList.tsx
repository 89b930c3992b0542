import { useEffect, useState } from "preact/hooks";
import { errorFromResponse } from "../api/client";
import { api } from "../state";
import { ErrorBanner, formatBytes } from "./common";

interface UploadedFile {
  file_id: string;
  filename: string;
  size_bytes: number;
  source_type?: string;
  analysis_status?: string;
}

/** The case's evidence files; a download goes through fetch (it needs the token). */
export function EvidenceList({ caseId, version }: { caseId: string; version: number }) {
  const [files, setFiles] = useState<UploadedFile[] | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    api
      .call<{ files: UploadedFile[] }>(
        `/api/v1/cases/${encodeURIComponent(caseId)}/uploaded-files?limit=100&offset=0`,
      )
      .then((list) => setFiles(list.files))
      .catch(() => setFiles(null));
  }, [caseId, version]);

  async function download(f: UploadedFile) {
    setError(null);
    try {
      const res = await api.send(`/api/v1/evidence/${encodeURIComponent(f.file_id)}/content`);
      if (!res.ok) throw await errorFromResponse(res);
      const url = URL.createObjectURL(await res.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = f.filename;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (err) {
      setError(err);
    }
  }

  if (!files || files.length === 0) return null;
  return (
    <>
      <h3>Evidence</h3>
      <ErrorBanner error={error} />
      <ul class="evidence" aria-label="Evidence files">
        {files.map((f) => (
          <li key={f.file_id}>
            <button
              type="button"
              class="link"
              aria-label={`Download ${f.filename}`}
              onClick={() => download(f)}
            >
              {f.filename}
            </button>{" "}
            <span class="muted small">
              {formatBytes(f.size_bytes)}
              {f.source_type ? ` · ${f.source_type}` : ""}
            </span>
          </li>
        ))}
      </ul>
    </>
  );
}
