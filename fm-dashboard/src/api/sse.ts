// A Server-Sent Events parser for fetch() bodies (EventSource cannot POST).
// Follows the WHATWG "event stream interpretation" rules: lines end in CRLF, LF or CR
// (a CRLF may be split across chunks), `data:` lines join with "\n", comments start
// with ":", one leading space after the colon is dropped, an event is dispatched on a
// blank line, and an unterminated event at the end of the stream is discarded.

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
  retry?: number;
}

export class SseParser {
  private buffer = "";
  private skipLeadingLf = false;
  private started = false;
  private eventType = "";
  private dataLines: string[] | null = null;
  private lastId: string | undefined;
  private retry: number | undefined;

  constructor(private readonly onEvent: (event: SseEvent) => void) {}

  feed(chunk: string): void {
    if (!this.started && chunk.length > 0) {
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (chunk.length === 0) return;
    if (this.skipLeadingLf && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.skipLeadingLf = false;
    this.buffer += chunk;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== "\n" && ch !== "\r") continue;
      this.line(this.buffer.slice(start, i));
      if (ch === "\r") {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === "\n") i++;
        } else {
          this.skipLeadingLf = true;
        }
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
  }

  /** End of stream: a trailing event without its blank line is dropped, as browsers do. */
  end(): void {
    this.buffer = "";
    this.dataLines = null;
    this.eventType = "";
  }

  private line(line: string): void {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.eventType = value;
        break;
      case "data":
        (this.dataLines ??= []).push(value);
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
  }

  private dispatch(): void {
    const data = this.dataLines;
    const type = this.eventType || "message";
    this.dataLines = null;
    this.eventType = "";
    if (data === null) return;
    const event: SseEvent = { event: type, data: data.join("\n") };
    if (this.lastId !== undefined) event.id = this.lastId;
    if (this.retry !== undefined) event.retry = this.retry;
    this.onEvent(event);
  }
}

/** Read a streamed response body as SSE events, in order, until the stream ends. */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  const queue: SseEvent[] = [];
  const parser = new SseParser((e) => queue.push(e));
  try {
    for (;;) {
      if (signal?.aborted) throw new DOMException("The turn was cancelled.", "AbortError");
      const { value, done } = await reader.read();
      if (done) {
        parser.feed(decoder.decode());
        parser.end();
        while (queue.length) yield queue.shift()!;
        return;
      }
      parser.feed(decoder.decode(value, { stream: true }));
      while (queue.length) yield queue.shift()!;
    }
  } finally {
    reader.releaseLock();
  }
}
