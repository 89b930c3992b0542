"""A fake LLM provider: a real HTTP server speaking the OpenAI and Anthropic wire protocols.

The one stand-in of the test suite (DESIGN.md "Testing"): the real SDKs and LangChain talk
to it over HTTP, so everything from the provider chain down to the socket runs for real.

    fake = FakeLLMServer().start()            # a thread, on a free port
    fake.base_url                             # http://127.0.0.1:PORT
    # OpenAI chat completions:  POST {base_url}/v1/chat/completions
    #   or, named:              POST {base_url}/<name>/v1/chat/completions
    fake.openai_base_url("primary")           # http://127.0.0.1:PORT/primary/v1
    # Anthropic messages:       POST {base_url}/v1/messages  (or /<name>/v1/messages)
    fake.anthropic_base_url("backup")         # http://127.0.0.1:PORT/backup (SDK adds /v1)

Both protocols stream (`"stream": true`: OpenAI SSE chunks with a final usage chunk,
Anthropic message_start / content_block_delta / message_delta / message_stop events).

Answers, in order of precedence:
- `fake.script("text", {"answer": ...}, ...)`: a queue, one item per request (dicts are
  sent as JSON text). `fake.responder = fn(request) -> str | dict` answers from a function
  of the `FakeRequest`.
- otherwise `default_answer(request)`: for a turn prompt, a valid structured turn (JSON)
  that cites the first passage the prompt carries (a line `SOURCE S1 | title: ... |`);
  for a prompt containing `TASK: title`, a short title; for `TASK: postmortem`, a
  Markdown post-mortem. So whole-system tests work without any scripting.

Faults, per provider name (the path prefix, e.g. `primary`, or the request's model name;
`"*"` matches every request); `times=None` means until `clear_faults()`:
- `fake.fail(name, status=500, times=1)`; `fake.rate_limit(name, retry_after=1)` (429 with
  a Retry-After header); `fake.hang(name, seconds=30)` (reads the request, answers nothing);
  `fake.latency(name, seconds)` before the first byte; `fake.chunk_delay(name, seconds)`
  between streamed chunks; `fake.cut(name, after_events=4)`: a stream that breaks off
  with the protocol's error event after that many events (a provider failing mid-answer).

What a real server would do with what was sent:
- `fake.honour_cap(name, field="max_tokens")`: a server that reads only that output-cap
  field (llama.cpp reads `max_tokens`, never `max_completion_tokens`): the answer is cut
  to the cap (~4 characters a token) with finish_reason `length`. Without it the fake
  ignores every cap (a server the agent must stop on its own).
- `fake.refuse_response_format(name, form=None, status=400)`: refuses a request whose
  `response_format` has that `type` (any type with None): an OpenAI-compatible server
  without structured output, or llama-cpp-python's server, which answers a 500 to
  `json_schema` and takes `json_object` with a `schema`.
- Anthropic requests with `tools` and a forced `tool_choice` are answered with a
  `tool_use` block (streamed as `input_json_delta`), its input the answer's JSON object.
`FakeRequest.response_format`, `.tools`, `.tool_choice`, `.max_tokens` and
`.max_completion_tokens` read what was asked for.

A recording relay in front of a real server: `FakeLLMServer(upstream="http://host:port")`
forwards every request (faults still apply first) to the upstream's same path, less the
name prefix, and relays its answer byte for byte (streams as they arrive), so `requests`
holds exactly what the agent sent to a real model (make test-llm).

`GET {base_url}/_fake/requests` lists the recorded requests as JSON (for a fake running in
another process: `python -m fm_common.testing.fake_llm --port 9999` serves until killed).

`fake.requests` records every request (`FakeRequest`: name, protocol, path, headers, body
as parsed JSON, `.text` = every message's text joined) for assertions such as "no secret
reached the provider": `fake.all_text()` is every request body received, as text.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fm_common.testing.fake_llm_wire import (
    anthropic_events,
    complete_body,
    openai_events,
)

Answer = str | dict[str, Any]


@dataclass
class FakeRequest:
    """One request the fake provider received."""

    name: str
    protocol: str  # "openai" | "anthropic"
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: str
    # Set once the whole answer was written (streams: after the last event).
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def response_format(self) -> dict[str, Any] | None:
        value = self.body.get("response_format")
        return value if isinstance(value, dict) else None

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools") or [])

    @property
    def tool_choice(self) -> Any:
        return self.body.get("tool_choice")

    @property
    def max_tokens(self) -> int | None:
        value = self.body.get("max_tokens")
        return int(value) if value is not None else None

    @property
    def max_completion_tokens(self) -> int | None:
        value = self.body.get("max_completion_tokens")
        return int(value) if value is not None else None

    @property
    def forced_tool(self) -> str | None:
        """The tool an Anthropic request forces (tool_choice {type: tool, name})."""
        choice = self.tool_choice
        if self.protocol == "anthropic" and isinstance(choice, dict) and self.tools:
            if choice.get("type") == "tool":
                return str(choice.get("name"))
        return None

    @property
    def text(self) -> str:
        """Every message's text (and the Anthropic system prompt), joined by newlines."""
        parts: list[str] = []
        system = self.body.get("system")
        if system:
            parts.append(_content_text(system))
        for msg in self.body.get("messages", []):
            parts.append(_content_text(msg.get("content")))
        return "\n".join(parts)


@dataclass
class _Fault:
    kind: str  # fail | hang | latency | chunk_delay | cut | cap | refuse_format
    status: int = 500
    retry_after: float | None = None
    field: str = ""
    seconds: float = 0.0
    times: int | None = None


@dataclass
class _State:
    script: deque[Answer] = field(default_factory=deque)
    faults: dict[str, list[_Fault]] = field(default_factory=dict)
    requests: list[FakeRequest] = field(default_factory=list)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(block.get("text", "")) if isinstance(block, dict) else str(block)
            for block in content
        )
    return "" if content is None else str(content)


_SOURCE_RE = re.compile(r"SOURCE (S\d+) \| title: (.*?) \|")
_USER_RE = re.compile(r"QUESTION:\s*(.+)")


def default_answer(request: FakeRequest) -> Answer:
    """The answer given when no script or responder is set (see the module docstring)."""
    text = request.text
    if "TASK: title" in text:
        found = _USER_RE.search(text)
        words = re.findall(r"[A-Za-z0-9][\w.-]*", found.group(1) if found else "Incident")
        return " ".join(words[:6]).capitalize() or "Incident investigation"
    if "TASK: postmortem" in text:
        return (
            "# Post-mortem\n\n## Summary\nThe incident described in the case was "
            "investigated.\n\n## Impact\nUsers were affected while the fault lasted.\n\n"
            "## Timeline\n- The case was opened.\n\n## Root cause\nSee the case's hypotheses."
            "\n\n## Resolution\nThe fix recorded in the case.\n\n## Action items\n"
            "- [ ] Add monitoring for this failure mode.\n"
        )
    source = _SOURCE_RE.search(text)
    if source:
        sid, title = source.group(1), source.group(2)
        answer = f'According to "{title}" [{sid}], follow the runbook steps for this symptom.'
        cited = [sid]
    else:
        answer = "I found no runbook passage matching this question; tell me more."
        cited = []
    return {
        "answer": answer,
        "cited_sources": cited,
        "milestone_updates": ["symptom_verified"],
        "hypotheses": [
            {
                "statement": "The symptom matches a known failure mode in the runbooks.",
                "likelihood": 0.6,
                "evidence": cited,
            }
        ],
        "proposed_state": None,
        "suggested_actions": [{"label": "Share the relevant logs", "type": "EVIDENCE"}],
    }


class FakeLLMServer:
    """A real HTTP server speaking OpenAI chat completions and Anthropic messages."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        stream_chunk_chars: int = 8,
        port: int = 0,
        upstream: str | None = None,
    ) -> None:
        self.host = host
        self.upstream = upstream.rstrip("/") if upstream else None
        self._port = port
        self.stream_chunk_chars = stream_chunk_chars
        self.responder: Callable[[FakeRequest], Answer] | None = None
        self._state = _State()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer((self.host, self._port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        assert self._server is not None, "call start() first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def openai_base_url(self, name: str = "default") -> str:
        return f"{self.base_url}/{name}/v1"

    def anthropic_base_url(self, name: str = "default") -> str:
        return f"{self.base_url}/{name}"

    # -- scripting -------------------------------------------------------------------
    def script(self, *answers: Answer) -> None:
        with self._lock:
            self._state.script.extend(answers)

    def reset(self) -> None:
        """Forget the script, the responder, the faults and the recorded requests."""
        with self._lock:
            self._state = _State()
        self.responder = None

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def _add(self, name: str, fault: _Fault) -> None:
        with self._lock:
            self._state.faults.setdefault(name, []).append(fault)

    def fail(self, name: str, status: int = 500, times: int | None = None) -> None:
        self._add(name, _Fault("fail", status=status, times=times))

    def rate_limit(self, name: str, retry_after: float = 1, times: int | None = None) -> None:
        self._add(name, _Fault("fail", status=429, retry_after=retry_after, times=times))

    def hang(self, name: str, seconds: float = 30.0, times: int | None = None) -> None:
        self._add(name, _Fault("hang", seconds=seconds, times=times))

    def cut(self, name: str, after_events: int = 4, times: int | None = None) -> None:
        self._add(name, _Fault("cut", seconds=after_events, times=times))

    def honour_cap(self, name: str, field: str = "max_tokens") -> None:
        self._add(name, _Fault("cap", field=field))

    def refuse_response_format(self, name: str, form: str | None = None, status: int = 400) -> None:
        self._add(name, _Fault("refuse_format", status=status, field=form or ""))

    def latency(self, name: str, seconds: float) -> None:
        self._add(name, _Fault("latency", seconds=seconds))

    def chunk_delay(self, name: str, seconds: float) -> None:
        self._add(name, _Fault("chunk_delay", seconds=seconds))

    # -- assertions ------------------------------------------------------------------
    @property
    def requests(self) -> list[FakeRequest]:
        with self._lock:
            return list(self._state.requests)

    def requests_for(self, name: str) -> list[FakeRequest]:
        return [r for r in self.requests if r.name == name or r.model == name]

    def all_text(self) -> str:
        """Every request body received, as raw text (for 'this never left' assertions)."""
        return "\n".join(r.raw for r in self.requests)

    # -- internals -------------------------------------------------------------------
    def _faults_for(self, req: FakeRequest) -> list[_Fault]:
        found: list[_Fault] = []
        with self._lock:
            for key in (req.name, req.model, "*"):
                for fault in list(self._state.faults.get(key, [])):
                    if fault.times is not None:
                        if fault.times <= 0:
                            continue
                        if fault.kind in ("fail", "hang", "cut"):
                            fault.times -= 1
                    found.append(fault)
        return found

    def _answer(self, req: FakeRequest) -> str:
        with self._lock:
            scripted = self._state.script.popleft() if self._state.script else None
        if scripted is None:
            scripted = self.responder(req) if self.responder else default_answer(req)
        return scripted if isinstance(scripted, str) else json.dumps(scripted)

    def _record(self, req: FakeRequest) -> None:
        with self._lock:
            self._state.requests.append(req)


def _make_handler(fake: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every keep-alive answer.
        disable_nagle_algorithm = True

        def log_message(self, *_args: Any) -> None:
            return

        def do_GET(self) -> None:
            if self.path.startswith("/_fake/requests"):
                recorded = [
                    {"name": r.name, "protocol": r.protocol, "path": r.path, "body": r.body}
                    for r in fake.requests
                ]
                self._json(200, recorded)
            elif self.path.rstrip("/").endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": "fake-model"}]})
            else:
                self._json(404, {"error": {"message": "not found", "type": "not_found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8", errors="replace")
            path = self.path.split("?", 1)[0]
            if path.endswith("/chat/completions"):
                protocol = "openai"
            elif path.endswith("/messages"):
                protocol = "anthropic"
            else:
                self._json(404, {"error": {"message": f"no route {path}"}})
                return
            first = path.strip("/").split("/", 1)[0]
            name = "default" if first == "v1" else first
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                self._json(400, {"error": {"message": "body is not JSON"}})
                return
            req = FakeRequest(name, protocol, path, dict(self.headers.items()), body, raw)
            fake._record(req)
            chunk_delay = 0.0
            cut_after: int | None = None
            cap: int | None = None
            for fault in fake._faults_for(req):
                if fault.kind == "cap" and req.body.get(fault.field) is not None:
                    cap = int(req.body[fault.field])
                fmt = req.response_format
                if (
                    fault.kind == "refuse_format"
                    and fmt is not None
                    and (not fault.field or fmt.get("type") == fault.field)
                ):
                    self._json(
                        fault.status,
                        {"error": {"message": "response_format is not supported", "code": 400}},
                    )
                    return
                if fault.kind == "latency":
                    time.sleep(fault.seconds)
                elif fault.kind == "chunk_delay":
                    chunk_delay = fault.seconds
                elif fault.kind == "cut":
                    cut_after = int(fault.seconds)
                elif fault.kind == "hang":
                    fake._stopping.wait(fault.seconds)
                    self.close_connection = True
                    return
                elif fault.kind == "fail":
                    self._error(protocol, fault.status, fault.retry_after)
                    return
            if fake.upstream:
                try:
                    self._relay(req, raw)
                finally:
                    req.finished.set()
                return
            text = fake._answer(req)
            finish = "stop"
            if cap is not None and len(text) > cap * 4:
                text, finish = text[: cap * 4], "length"
            try:
                if req.stream:
                    self._stream(req, text, chunk_delay, cut_after, finish)
                else:
                    self._json(200, complete_body(req, text, finish))
            finally:
                req.finished.set()

        def _relay(self, req: FakeRequest, raw: str) -> None:
            """Forward to the upstream server and relay its answer as it arrives."""
            import http.client
            from urllib.parse import urlsplit

            assert fake.upstream is not None
            target = urlsplit(fake.upstream)
            path = req.path if req.name == "default" else req.path[len(req.name) + 1 :]
            conn = http.client.HTTPConnection(target.netloc, timeout=3600)
            try:
                conn.request(
                    "POST", path, body=raw.encode(), headers={"Content-Type": "application/json"}
                )
                resp = conn.getresponse()
                self.send_response(resp.status)
                for key in ("Content-Type", "Retry-After"):
                    if resp.getheader(key):
                        self.send_header(key, resp.getheader(key) or "")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                while chunk := resp.read1(65536):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            finally:
                conn.close()

        # -- writers ---------------------------------------------------------------
        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, protocol: str, status: int, retry_after: float | None) -> None:
            headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
            message = f"fake provider error {status}"
            if protocol == "anthropic":
                kind = "rate_limit_error" if status == 429 else "api_error"
                body: Any = {"type": "error", "error": {"type": kind, "message": message}}
            else:
                kind = "rate_limit_exceeded" if status == 429 else "server_error"
                body = {"error": {"message": message, "type": kind, "code": kind}}
            self._json(status, body, headers)

        def _stream(
            self,
            req: FakeRequest,
            text: str,
            delay: float,
            cut_after: int | None = None,
            finish: str = "stop",
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            size = fake.stream_chunk_chars
            pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
            events = (
                anthropic_events(req, text, pieces, finish)
                if req.protocol == "anthropic"
                else openai_events(req, text, pieces, finish)
            )
            if cut_after is not None:
                broken: tuple[str, Any] = (
                    (
                        "error",
                        {
                            "type": "error",
                            "error": {"type": "overloaded_error", "message": "cut by the fake"},
                        },
                    )
                    if req.protocol == "anthropic"
                    else ("", {"error": {"message": "cut by the fake", "type": "server_error"}})
                )
                events = [*events[:cut_after], broken]
            try:
                for i, (event, data) in enumerate(events):
                    if delay and i > 1:
                        time.sleep(delay)
                    line = f"event: {event}\n" if event else ""
                    payload = data if isinstance(data, str) else json.dumps(data)
                    self.wfile.write(f"{line}data: {payload}\n\n".encode())
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


def main() -> None:
    """Serve a fake provider until killed (for a provider in its own process)."""
    import argparse

    parser = argparse.ArgumentParser(prog="fm_common.testing.fake_llm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stream-chunk-chars", type=int, default=8)
    args = parser.parse_args()
    fake = FakeLLMServer(args.host, stream_chunk_chars=args.stream_chunk_chars, port=args.port)
    fake.start()
    # The one line a parent process reads (bench/agent.py runs the fake in its own process).
    sys.stdout.write(fake.base_url + "\n")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
