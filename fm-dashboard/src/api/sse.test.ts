import { describe, expect, it } from "vitest";
import { SseParser, readSse, type SseEvent } from "./sse";
import { readTurnStream } from "./turns";

function parseAll(chunks: string[]): SseEvent[] {
  const out: SseEvent[] = [];
  const p = new SseParser((e) => out.push(e));
  for (const c of chunks) p.feed(c);
  p.end();
  return out;
}

function stream(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(ctrl) {
      for (const c of chunks) ctrl.enqueue(enc.encode(c));
      ctrl.close();
    },
  });
}

describe("SseParser", () => {
  it("dispatches named events with their data", () => {
    expect(parseAll(['event: token\ndata: {"text":"Hi"}\n\n'])).toEqual([
      { event: "token", data: '{"text":"Hi"}' },
    ]);
  });

  it("defaults the event type to message and joins data lines with newlines", () => {
    expect(parseAll(["data: a\ndata: b\n\n"])).toEqual([{ event: "message", data: "a\nb" }]);
  });

  it("handles an event split at every possible byte", () => {
    const text = "event: citation\r\ndata: {\"chunk_id\":\"c1\"}\r\n\r\nevent: done\r\ndata: {}\r\n\r\n";
    for (let cut = 0; cut <= text.length; cut++) {
      const events = parseAll([text.slice(0, cut), text.slice(cut)]);
      expect(events.map((e) => e.event), `cut at ${cut}`).toEqual(["citation", "done"]);
      expect(events[0].data).toBe('{"chunk_id":"c1"}');
    }
  });

  it("treats a CR-LF split across chunks as one line ending, not two", () => {
    const events = parseAll(["data: x\r", "\ndata: y\r\n\r\n"]);
    expect(events).toEqual([{ event: "message", data: "x\ny" }]);
  });

  it("accepts bare CR line endings", () => {
    expect(parseAll(["event: state\rdata: 1\r\r"])).toEqual([{ event: "state", data: "1" }]);
  });

  it("ignores comments and unknown fields, keeps id and retry", () => {
    const events = parseAll([": keep-alive\nfoo: bar\nid: 7\nretry: 500\ndata: z\n\n"]);
    expect(events).toEqual([{ event: "message", data: "z", id: "7", retry: 500 }]);
  });

  it("removes only one leading space after the colon", () => {
    expect(parseAll(["data:  two\n\n"])[0].data).toBe(" two");
    expect(parseAll(["data:none\n\n"])[0].data).toBe("none");
  });

  it("does not dispatch an event without data or an unterminated one", () => {
    expect(parseAll(["event: token\n\n", "data: partial"])).toEqual([]);
  });

  it("strips a byte order mark at the start", () => {
    expect(parseAll(["\ufeffdata: a\n\n"])).toEqual([{ event: "message", data: "a" }]);
  });
});

describe("readSse", () => {
  it("decodes UTF-8 split across chunks", async () => {
    const bytes = new TextEncoder().encode("data: héllo ✓\n\n");
    const body = new ReadableStream<Uint8Array>({
      start(ctrl) {
        for (const b of bytes) ctrl.enqueue(new Uint8Array([b]));
        ctrl.close();
      },
    });
    const events: SseEvent[] = [];
    for await (const e of readSse(body)) events.push(e);
    expect(events).toEqual([{ event: "message", data: "héllo ✓" }]);
  });
});

describe("readTurnStream", () => {
  it("streams tokens and citations and resolves with the done event", async () => {
    const tokens: string[] = [];
    const citations: string[] = [];
    const result = await readTurnStream(
      stream([
        'event: token\ndata: {"text":"Disk "}\n\n',
        'event: token\ndata: "full"\n\n',
        'event: citation\ndata: {"document_id":"d1","chunk_id":"c1","title":"Runbook","snippet":"s","score":0.8,"scope":"personal"}\n\n',
        'event: state\ndata: {"case_state":"investigating"}\n\n',
        'event: done\ndata: {"turn_number":1,"case_state":"investigating","milestones_completed":[],"progress_made":true}\n\n',
      ]),
      { onToken: (t) => tokens.push(t), onCitation: (c) => citations.push(c.chunk_id) },
    );
    expect(tokens).toEqual(["Disk ", "full"]);
    expect(citations).toEqual(["c1"]);
    expect(result.agent_response).toBe("Disk full");
    expect(result.citations?.map((c) => c.document_id)).toEqual(["d1"]);
    expect(result.turn_number).toBe(1);
  });

  it("turns an error event into an error with the server's sentence", async () => {
    await expect(
      readTurnStream(
        stream(['event: error\ndata: {"detail":"Every provider failed.","code":"LLM_UNAVAILABLE"}\n\n']),
        {},
      ),
    ).rejects.toMatchObject({ code: "LLM_UNAVAILABLE", message: "Every provider failed." });
  });

  it("reports a stream that ends before done", async () => {
    await expect(readTurnStream(stream(['event: token\ndata: "x"\n\n']), {})).rejects.toMatchObject({
      code: "STREAM_ENDED",
    });
  });
});
