"""OCR engines compared on screenshots we render ourselves (ADR 0110).

Renders, with Pillow and the machine's DejaVu fonts, the images an engineer attaches:
terminal output (light on dark), a Python stack trace, an error dialog, a table; each at
three text sizes (12, 15, 20 px: what a 96-dpi screenshot shows) and in three typefaces
(Sans Mono, Sans, Serif) where the case allows. Each image is read by
  - tesseract (Debian's tesseract-ocr, the way the worker runs it:
    knowledge_service.domain.ingest.ocr, a child process, one thread, 2x upscale);
  - tesseract on the raw image (no upscale, no inversion): what the preparation buys;
  - RapidOCR (rapidocr_onnxruntime: PP-OCR models shipped inside the PyPI package,
    ONNX Runtime on one intra-op thread, then on two) when it is importable.
Character error rate = Levenshtein distance / reference length, both with whitespace
collapsed to single spaces; seconds per image are wall time, sequential, on this machine.

    uv run --frozen --no-sync python bench/ocr.py
    uv run --frozen --no-sync --with rapidocr-onnxruntime python bench/ocr.py   # both

Writes bench/results/ocr.json and ocr.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from fm_common.testing.documents import font
from knowledge_service.domain.ingest import ocr

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SIZES = (12, 15, 20)

TERMINAL = [
    "$ kubectl get pods -n payments",
    "NAME                          READY   STATUS             RESTARTS   AGE",
    "payments-api-7d9f8b6c4-x2x9q  0/1     CrashLoopBackOff   14         52m",
    "payments-db-0                 1/1     Running            0          3d",
    "$ kubectl logs payments-api-7d9f8b6c4-x2x9q --previous",
    "Error: connect ECONNREFUSED 10.42.0.17:5432",
    "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)",
]
TRACE = [
    "Traceback (most recent call last):",
    '  File "/srv/orders/app/db.py", line 88, in acquire',
    "    conn = await self._pool.acquire(timeout=5.0)",
    '  File "/usr/lib/python3.11/asyncio/tasks.py", line 479, in wait_for',
    "    return fut.result()",
    "asyncpg.exceptions.TooManyConnectionsError: sorry, too many clients already",
]
DIALOG = [
    "Deployment failed",
    "The release orders-api v2.14.3 could not be rolled out:",
    "readiness probe failed on 3 of 3 pods (HTTP 503 on /healthz).",
    "Rollback to v2.14.2 completed at 14:07 UTC.",
]
TABLE = [
    ["Service", "p99 latency", "Error rate", "Status"],
    ["checkout", "1840 ms", "4.2%", "degraded"],
    ["inventory", "212 ms", "0.1%", "ok"],
    ["payments", "3977 ms", "11.8%", "down"],
]
FONTS = ("mono", "sans", "serif")


def _face(kind: str, size: int) -> Any:
    from PIL import ImageFont

    if kind == "serif":
        return ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", size)
    return font(size, mono=kind == "mono")


def _lines_image(lines: list[str], face: Any, size: int, fg: Any, bg: Any) -> Image.Image:
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(int(probe.textlength(line, font=face)) for line in lines) + 24
    step = int(size * 1.45)
    image = Image.new("RGB", (width, step * len(lines) + 24), bg)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((12, 12 + i * step), line, font=face, fill=fg)
    return image


def terminal(size: int, kind: str) -> tuple[Image.Image, str]:
    image = _lines_image(TERMINAL, _face(kind, size), size, (220, 220, 210), (30, 30, 36))
    return image, "\n".join(TERMINAL)


def trace(size: int, kind: str) -> tuple[Image.Image, str]:
    image = _lines_image(TRACE, _face(kind, size), size, (25, 25, 25), (250, 250, 250))
    return image, "\n".join(TRACE)


def dialog(size: int, kind: str) -> tuple[Image.Image, str]:
    face = _face(kind, size)
    bold = _face(kind, int(size * 1.2))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(int(probe.textlength(line, font=face)) for line in DIALOG) + 80
    step = int(size * 1.6)
    height = step * (len(DIALOG) + 3) + 40
    image = Image.new("RGB", (width + 40, height + 40), (90, 100, 120))  # the desktop
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, width + 20, height + 20), fill=(240, 240, 240), outline=(60, 60, 60))
    draw.rectangle((20, 20, width + 20, 20 + step + 10), fill=(200, 40, 40))  # title bar
    draw.text((34, 26), DIALOG[0], font=bold, fill=(255, 255, 255))
    for i, line in enumerate(DIALOG[1:]):
        draw.text((50, 40 + step * (i + 1) + 10), line, font=face, fill=(20, 20, 20))
    bx = width - 80
    by = height - step
    draw.rectangle((bx, by, bx + 80, by + step), fill=(220, 220, 220), outline=(90, 90, 90))
    draw.text((bx + 24, by + 4), "OK", font=face, fill=(0, 0, 0))
    return image, "\n".join([*DIALOG, "OK"])


def table(size: int, kind: str) -> tuple[Image.Image, str]:
    face = _face(kind, size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [
        max(int(probe.textlength(row[c], font=face)) for row in TABLE) + 2 * size
        for c in range(len(TABLE[0]))
    ]
    step = int(size * 2.0)
    image = Image.new("RGB", (sum(widths) + 21, step * len(TABLE) + 21), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for r, row in enumerate(TABLE):
        x = 10
        if r == 0:
            draw.rectangle((10, 10, 10 + sum(widths), 10 + step), fill=(225, 230, 240))
        for c, cell in enumerate(row):
            draw.rectangle(
                (x, 10 + r * step, x + widths[c], 10 + (r + 1) * step), outline=(150,) * 3
            )
            draw.text((x + size, 10 + r * step + size // 3), cell, font=face, fill=(0, 0, 0))
            x += widths[c]
    return image, "\n".join(" ".join(row) for row in TABLE)


CASES: dict[str, tuple[Callable[[int, str], tuple[Image.Image, str]], tuple[str, ...]]] = {
    "terminal": (terminal, ("mono",)),
    "stack trace": (trace, ("mono", "sans")),
    "error dialog": (dialog, ("sans", "serif")),
    "table": (table, ("sans", "serif", "mono")),
}


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(reference: str, hypothesis: str) -> float:
    ref, hyp = " ".join(reference.split()), " ".join(hypothesis.split())
    return levenshtein(ref, hyp) / max(1, len(ref))


def tesseract_prepared(image: Image.Image) -> str:
    return ocr.ocr_image(image, ocr.OcrLimits()).text


def tesseract_raw(image: Image.Image) -> str:
    import subprocess

    buf = io.BytesIO()
    image.save(buf, "PNG")
    proc = subprocess.run(
        ["tesseract", "stdin", "stdout", "-l", "eng", "--psm", "3"],
        input=buf.getvalue(),
        capture_output=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        check=True,
    )
    return proc.stdout.decode()


def rapidocr_engine(threads: int) -> Callable[[Image.Image], str] | None:
    try:
        import numpy as np
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        return None
    engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def run(image: Image.Image) -> str:
        result, _ = engine(np.asarray(image.convert("RGB")))
        return "\n".join(item[1] for item in result or [])

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--save-images", type=Path, default=None)
    parser.add_argument(
        "--rapid-threads", default="1", help="comma-separated ONNX Runtime thread counts"
    )
    args = parser.parse_args()
    engines: dict[str, Callable[[Image.Image], str]] = {
        "tesseract (as the worker runs it)": tesseract_prepared,
        "tesseract, raw image": tesseract_raw,
    }
    for threads in (int(t) for t in args.rapid_threads.split(",")):
        rapid = rapidocr_engine(threads)
        if rapid is not None:
            engines[f"rapidocr-onnxruntime, {threads} thread(s)"] = rapid
    images = []
    for name, (make, kinds) in CASES.items():
        for kind in kinds:
            for size in SIZES:
                image, ref = make(size, kind)
                images.append((name, kind, size, image, ref))
                if args.save_images:
                    args.save_images.mkdir(parents=True, exist_ok=True)
                    image.save(args.save_images / f"{name.replace(' ', '-')}-{kind}-{size}.png")
    rows: list[dict[str, Any]] = []
    for engine, run in engines.items():
        run(images[0][3])  # warm up (model load, page cache)
        for name, kind, size, image, ref in images:
            started = time.perf_counter()
            text = run(image)
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "engine": engine,
                    "case": name,
                    "font": kind,
                    "size": size,
                    "pixels": image.size[0] * image.size[1],
                    "cer": round(cer(ref, text), 4),
                    "seconds": round(seconds, 3),
                }
            )
            score = rows[-1]["cer"]
            print(f"{engine:38} {name:13} {kind:5} {size:2}px  CER {score:.3f}  {seconds:.2f}s")
    summary = []
    for engine in engines:
        mine = [r for r in rows if r["engine"] == engine]
        summary.append(
            {
                "engine": engine,
                "images": len(mine),
                "cer_mean": round(statistics.mean(r["cer"] for r in mine), 4),
                "cer_median": round(statistics.median(r["cer"] for r in mine), 4),
                "cer_worst": round(max(r["cer"] for r in mine), 4),
                "seconds_mean": round(statistics.mean(r["seconds"] for r in mine), 3),
                "seconds_p90": round(sorted(r["seconds"] for r in mine)[int(0.9 * len(mine))], 3),
                "per_case_cer": {
                    case: round(statistics.mean(r["cer"] for r in mine if r["case"] == case), 4)
                    for case in CASES
                },
            }
        )
    load = os.getloadavg()[0]
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f} at the start",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "sizes_px": SIZES,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ocr.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=2)
    )
    lines = [
        "# OCR engines on rendered screenshots (bench/ocr.py)",
        "",
        f"{meta['machine']}; {meta['date']}. {len(images)} images: terminal (light on dark, mono), "
        "stack trace, error dialog, table; 12/15/20 px; DejaVu Sans Mono, Sans, Serif.",
        "",
        "| engine | CER mean | CER median | CER worst | s/image mean | s/image p90 "
        "| terminal | trace | dialog | table |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        per = s["per_case_cer"]
        lines.append(
            f"| {s['engine']} | {s['cer_mean']:.3f} | {s['cer_median']:.3f} | {s['cer_worst']:.3f} "
            f"| {s['seconds_mean']:.2f} | {s['seconds_p90']:.2f} | {per['terminal']:.3f} "
            f"| {per['stack trace']:.3f} | {per['error dialog']:.3f} | {per['table']:.3f} |"
        )
    (RESULTS / "ocr.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
