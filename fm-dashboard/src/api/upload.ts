// Multipart uploads with progress: fetch() has no upload progress, XMLHttpRequest does.

import { ApiError, errorFromResponse, type ApiClient } from "./client";

export interface UploadResult<T> {
  status: number;
  body: T;
  location: string | null;
}

function xhrOnce(
  client: ApiClient,
  path: string,
  form: FormData,
  token: string,
  onProgress: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<XMLHttpRequest> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", client.url(path));
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    if (client.sessionId) xhr.setRequestHeader("X-Session-Id", client.sessionId);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () =>
      reject(new ApiError(0, "NETWORK", "The upload failed: cannot reach FaultMaven."));
    xhr.onabort = () => reject(new DOMException("Upload cancelled", "AbortError"));
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(form);
  });
}

function toResponse(xhr: XMLHttpRequest): Response {
  const headers = new Headers();
  for (const line of xhr.getAllResponseHeaders().trim().split(/[\r\n]+/)) {
    const i = line.indexOf(":");
    if (i > 0) headers.append(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const nullBody = xhr.status === 204 || xhr.status === 205 || xhr.status === 304;
  return new Response(nullBody ? null : xhr.responseText, { status: xhr.status, headers });
}

/** POST a multipart form, reporting upload progress; refreshes the token once on 401. */
export async function uploadWithProgress<T>(
  client: ApiClient,
  path: string,
  form: FormData,
  onProgress: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<UploadResult<T>> {
  let token = await client.freshAccessToken();
  let xhr = await xhrOnce(client, path, form, token, onProgress, signal);
  if (xhr.status === 401) {
    if (!(await client.refresh())) {
      client.expire();
      throw new ApiError(401, "SESSION_EXPIRED", "Your session has expired. Please log in again.");
    }
    token = await client.freshAccessToken();
    xhr = await xhrOnce(client, path, form, token, onProgress, signal);
  }
  const res = toResponse(xhr);
  if (!res.ok) {
    throw await errorFromResponse(res);
  }
  onProgress(1);
  return {
    status: res.status,
    body: (xhr.responseText ? JSON.parse(xhr.responseText) : null) as T,
    location: res.headers.get("Location"),
  };
}
