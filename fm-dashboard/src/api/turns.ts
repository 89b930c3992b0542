// A turn: multipart POST /cases/{id}/turns, read as SSE when the agent streams, polled
// at its Location when it is queued (202), or a plain TurnResponse.

import { ApiError, errorFromResponse, type ApiClient } from "./client";
import { readSse } from "./sse";
import type { Citation, TurnResponse } from "./types";

export interface TurnInput {
  query?: string;
  pastedContent?: string;
  files?: File[];
  intentType?: string;
  intentData?: unknown;
}

export interface TurnHandlers {
  onToken?: (text: string) => void;
  onCitation?: (citation: Citation) => void;
  onState?: (state: Record<string, unknown>) => void;
  onQueued?: () => void;
}

export function newIdempotencyKey(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function turnForm(input: TurnInput): FormData {
  const form = new FormData();
  if (input.query?.trim()) form.append("query", input.query.trim());
  if (input.pastedContent?.trim()) form.append("pasted_content", input.pastedContent);
  for (const file of input.files ?? []) form.append("files", file, file.name);
  if (input.intentType) form.append("intent_type", input.intentType);
  if (input.intentData !== undefined) form.append("intent_data", JSON.stringify(input.intentData));
  return form;
}

function parseJson(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

/** The text of a `token` event: a JSON string or an object carrying the piece. */
export function tokenText(payload: unknown): string {
  if (typeof payload === "string") return payload;
  if (payload && typeof payload === "object") {
    const p = payload as Record<string, unknown>;
    for (const key of ["text", "token", "delta", "content"]) {
      if (typeof p[key] === "string") return p[key] as string;
    }
  }
  return "";
}

export async function submitTurn(
  client: ApiClient,
  caseId: string,
  input: TurnInput,
  handlers: TurnHandlers = {},
  signal?: AbortSignal,
): Promise<TurnResponse> {
  const res = await client.send(`/api/v1/cases/${encodeURIComponent(caseId)}/turns`, {
    method: "POST",
    body: turnForm(input),
    headers: { Accept: "text/event-stream", "Idempotency-Key": newIdempotencyKey() },
    signal,
  });
  if (res.status === 202) {
    handlers.onQueued?.();
    const location = res.headers.get("Location");
    if (!location) throw new ApiError(202, "NO_LOCATION", "The turn was queued without a job URL.");
    const result = await client.pollJob<TurnResponse>(location, { signal });
    handlers.onToken?.(result.agent_response);
    for (const c of result.citations ?? []) handlers.onCitation?.(c);
    return result;
  }
  if (!res.ok) throw await errorFromResponse(res);
  const type = res.headers.get("Content-Type") ?? "";
  if (!type.includes("text/event-stream") || !res.body) {
    const result = (await res.json()) as TurnResponse;
    handlers.onToken?.(result.agent_response);
    for (const c of result.citations ?? []) handlers.onCitation?.(c);
    return result;
  }
  return readTurnStream(res.body, handlers, signal);
}

/** Consume the SSE events of a streamed turn; resolves with the `done` TurnResponse. */
export async function readTurnStream(
  body: ReadableStream<Uint8Array>,
  handlers: TurnHandlers,
  signal?: AbortSignal,
): Promise<TurnResponse> {
  let text = "";
  const citations: Citation[] = [];
  for await (const event of readSse(body, signal)) {
    const payload = parseJson(event.data);
    switch (event.event) {
      case "token": {
        const piece = tokenText(payload);
        text += piece;
        if (piece) handlers.onToken?.(piece);
        break;
      }
      case "citation":
        citations.push(payload as Citation);
        handlers.onCitation?.(payload as Citation);
        break;
      case "state":
        handlers.onState?.((payload ?? {}) as Record<string, unknown>);
        break;
      case "error": {
        const p = (payload ?? {}) as Record<string, unknown>;
        const message =
          (typeof p.detail === "string" && p.detail) ||
          (typeof p.message === "string" && p.message) ||
          (typeof payload === "string" && payload) ||
          "The agent could not answer.";
        throw new ApiError(200, typeof p.code === "string" ? p.code : "TURN_FAILED", message);
      }
      case "done": {
        const p = (payload ?? {}) as Record<string, unknown>;
        const turn = (p.turn ?? p.result ?? p.response ?? p) as Partial<TurnResponse>;
        return {
          ...turn,
          agent_response: turn.agent_response ?? text,
          citations: turn.citations ?? citations,
        } as TurnResponse;
      }
      default:
        break;
    }
  }
  throw new ApiError(0, "STREAM_ENDED", "The answer stopped before it was complete; try again.");
}
