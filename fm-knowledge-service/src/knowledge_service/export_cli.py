"""`fm-embedding-export`: export the embedding model to ONNX from the command line.

Prints the exported model's folder on stdout (its result), or the reason on stderr and
exits 2. The export itself is `domain/vectors/onnx_export.ensure_exported`; bootstrap and
the image build run this once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from knowledge_service.domain.vectors.onnx_export import ExportError, ensure_exported


def main(argv: list[str] | None = None) -> int:
    from knowledge_service.config import Settings

    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="fm-embedding-export",
        description="Export the embedding model to ONNX (once; kept while current).",
    )
    parser.add_argument("--model", default=settings.embedding_model)
    parser.add_argument(
        "--out",
        type=Path,
        default=settings.embedding_onnx_root,
        help="root directory of exported models (FM_EMBEDDING_ONNX_DIR)",
    )
    parser.add_argument("--force", action="store_true", help="export even when current")
    args = parser.parse_args(argv)
    try:
        path = ensure_exported(args.out.resolve(), args.model, force=args.force)
    except (ExportError, OSError) as exc:  # OSError: a model that cannot be loaded
        parser.exit(2, f"fm-embedding-export: {exc}\n")  # the reason on stderr
    sys.stdout.write(f"{path}\n")  # the command's result, read by whoever ran it
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
