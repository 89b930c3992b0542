"""Bounded parsing: the limits every file parser works within, and a runner that
enforces memory and time on one parse.

Two layers, because neither is enough alone:
- `ParseLimits`: shape limits the parsers check as they go (characters, CSV columns and
  cells, nesting depth of JSON/YAML, the heading/header context repeated on each chunk,
  chunks per document). They turn the known hostile shapes (a 100,000-column CSV, JSON
  nested 100,000 deep, a 5 MB cell) into a clear sentence for the user, cheaply.
- `run_bounded`: the parse runs in a forked child process with an address-space limit
  (`RLIMIT_AS`: the parent's current size + `memory_bytes`) and a wall-clock deadline
  (plus `RLIMIT_CPU` as a backstop). Whatever a parser library does with an input we did
  not foresee, the child is stopped by the kernel before the host is, and the task that
  asked gets `ParseLimitExceeded` with the reason: a permanent failure of that one
  document, recorded once, never a dead worker child and a redelivered task.

Used by the knowledge ingestion (worker) for every file kind; office documents and OCR
(issue 17) use the same limits and runner.
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Limits of one document's parse; defaults are the settings' defaults."""

    # Characters of extracted text (also caps PDF/HTML expansion).
    max_chars: int = 5_000_000
    max_pdf_pages: int = 2000
    # CSV: columns per row and characters per cell.
    max_csv_columns: int = 1000
    max_cell_chars: int = 100_000
    # JSON/YAML nesting (arrays/objects/mappings/sequences inside each other).
    max_depth: int = 100
    # The context each chunk repeats (heading path, CSV header): cut beyond this.
    max_context_chars: int = 400
    max_chunks: int = 20_000
    # Enforced by run_bounded on the process that parses.
    memory_bytes: int = 1024 * MiB
    seconds: float = 120.0
    # Office documents (ZIPs): what all their parts may inflate to.
    max_archive_bytes: int = 256 * MiB
    # OCR of images and scanned PDF pages (knowledge ingest/ocr.py, ADR 0110): pixels
    # checked before decoding, time and address space of tesseract per image, scanned
    # pages per PDF.
    ocr_enabled: bool = True
    ocr_max_pixels: int = 40_000_000
    ocr_seconds: float = 60.0
    ocr_memory_bytes: int = 1024 * MiB
    ocr_max_pages: int = 50
    ocr_languages: str = "eng"


class ParseLimitExceeded(Exception):
    """The parse went past a limit; the message is shown to the user."""


def _vm_size() -> int:
    """This process's current virtual size in bytes (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def limit_as(headroom_bytes: int) -> int:
    """Cap this process's address space at its current size + `headroom_bytes` (never
    above a cap it already has); the new cap. Past it, allocations fail: MemoryError
    in Python, an abort in native code."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + headroom_bytes
    for existing in (soft, hard):
        if existing != resource.RLIM_INFINITY:
            cap = min(cap, existing)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap if hard == resource.RLIM_INFINITY else hard))
    return cap


def _child(
    write_fd: int, fn: Callable[..., Any], args: tuple[Any, ...], limits: ParseLimits
) -> None:
    """In the forked child: limit, run, send ("ok", result) or ("error", exception)."""
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        limit_as(limits.memory_bytes)
        cpu = int(limits.seconds) + 5
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        try:
            payload: tuple[str, Any] = ("ok", fn(*args))
        except MemoryError:
            payload = ("memory", None)
        except RecursionError:
            payload = ("depth", None)
        except Exception as exc:
            payload = ("error", exc)
        try:
            data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            data = pickle.dumps(("memory", None))
        except Exception as exc:  # an unpicklable exception: keep its text
            data = pickle.dumps(("error", RuntimeError(repr(exc))))
        view = memoryview(data)
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
    except BaseException:
        code = 1
    finally:
        os.close(write_fd)
        os._exit(code)


def run_bounded(fn: Callable[..., T], *args: Any, limits: ParseLimits) -> T:
    """Run `fn(*args)` in a forked child within `limits.memory_bytes` more memory than
    this process uses and `limits.seconds` of wall-clock time; return its result.

    Raises ParseLimitExceeded when the child runs out of memory, time or stack, or dies;
    re-raises an exception `fn` raised (it must be picklable: ExtractionError is).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(read_fd)
        _child(write_fd, fn, args, limits)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + limits.seconds
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], left)
            if not ready:
                continue
            block = os.read(read_fd, 1 << 20)
            if not block:
                break
            chunks.append(block)
    finally:
        os.close(read_fd)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    mb = limits.memory_bytes // MiB
    if timed_out:
        raise ParseLimitExceeded(
            f"Reading the file took longer than its limit of {limits.seconds:g} s."
        )
    if not chunks:
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU:
            raise ParseLimitExceeded(
                f"Reading the file took longer than its limit of {limits.seconds:g} s."
            )
        # No answer: the child died (an allocation that failed in native code aborts).
        raise ParseLimitExceeded(f"Reading the file needs more than {mb} MB of memory.")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "ok":
        return value  # type: ignore[no-any-return]
    if kind == "memory":
        raise ParseLimitExceeded(f"Reading the file needs more than {mb} MB of memory.")
    if kind == "depth":
        raise ParseLimitExceeded("The file is nested too deeply to read.")
    raise value
