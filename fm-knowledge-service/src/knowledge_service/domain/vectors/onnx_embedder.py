"""The ONNX Runtime embedding backend (the default, ADR 0095): no torch at run time.

The model is the sentence-transformers one exported once to ONNX (`onnx_export`); the
tokenizer is its fast tokenizer, run by the `tokenizers` library. A text is tokenized
as sentence-transformers does it (truncated to the model's input length), batched by
token count (ADR 0140: a batch padded to its longest text, holding at most one input's
worth of tokens), run through the transformer, mean-pooled over its real tokens
and L2-normalised: the same vector as `SentenceTransformer.encode` (cosine >= 0.999
over the runbook corpus, bench/knowledge.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import structlog

from knowledge_service.domain.vectors import onnx_export
from knowledge_service.domain.vectors.names import canonical_model_name

log = structlog.get_logger("knowledge.embedder")


class EmbeddingModelUnavailable(RuntimeError):
    """The exported model is missing and cannot be exported here."""


class OnnxEmbedder:
    """One exported model; `encode` returns L2-normalised vectors as lists of floats.

    `threads` is ONNX Runtime's intra-op thread count per call (0: one). With one
    thread ORT starts no thread pool, so a session made before a fork (the worker's
    main process) is safe to use in the children.
    """

    backend = "onnx"

    def __init__(
        self,
        name: str,
        onnx_root: Path,
        threads: int = 0,
        export: bool = True,
        optimization: str = "all",
    ) -> None:
        self.name = canonical_model_name(name)
        # ONNX Runtime's graph optimisation level: disabled, basic, extended or all.
        self.optimization = optimization
        self.onnx_root = onnx_root
        self.threads = threads
        self.export = export
        self._session: Any = None
        self._session_threads = 0
        self._tokenizer: Any = None
        self._limit = 0
        self._pad_id = 0
        self._specials = 0
        self._manifest: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- loading ------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        """The ONNX Runtime session (loaded, and exported first if need be, on first use)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._load()
        return self._session

    def load(self) -> None:
        self.model  # noqa: B018 (loads it)

    def _load(self) -> None:
        # The tokenizers library would start a thread pool for every batch: pointless
        # for a few short texts on a shared 2-CPU machine, and fatal across the fork.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from tokenizers import Tokenizer

        directory = self._exported_dir()
        manifest = onnx_export.read_manifest(directory) or {}
        # One tokenizer, neither truncating nor padding (its vocabulary is ~8 MB a copy):
        # token counts use it as it is, `encode` truncates and pads itself.
        tokenizer = Tokenizer.from_file(str(directory / onnx_export.TOKENIZER_FILE))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._manifest = manifest
        self._limit = int(manifest["max_seq_length"])
        self._pad_id = int(manifest["pad_id"])
        self._tokenizer = tokenizer
        self._specials = len(tokenizer.encode("", add_special_tokens=True).ids)
        self._session = self._new_session(directory, self.threads or 1)
        log.info(
            "embedder.loaded",
            model=self.name,
            backend="onnx",
            dim=self.dimension,
            threads=self._session_threads,
            path=str(directory),
        )

    def check_available(self) -> None:
        """Raise EmbeddingModelUnavailable unless the model is exported (current) or can
        be exported here: cheap, so a process can refuse to start without it."""
        directory = onnx_export.model_dir(self.onnx_root, self.name)
        if onnx_export.is_current(directory, self.name):
            return
        if not self.export or not onnx_export.exporter_available():
            raise EmbeddingModelUnavailable(
                f"no current ONNX export of {self.name} in {self.onnx_root}: run "
                f"`fm-embedding-export --model {self.name} --out {self.onnx_root}` where the "
                f"`torch` extra is installed, or set FM_EMBEDDING_BACKEND=torch"
            )

    def _exported_dir(self) -> Path:
        directory = onnx_export.model_dir(self.onnx_root, self.name)
        if onnx_export.is_current(directory, self.name):
            return directory
        self.check_available()
        # In a child process: this process (a server) never imports torch.
        log.info("embedder.exporting", model=self.name, path=str(directory))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "knowledge_service.export_cli",  # fm-embedding-export
                "--model",
                self.name,
                "--out",
                str(self.onnx_root),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        if not onnx_export.is_current(directory, self.name):
            raise EmbeddingModelUnavailable(f"the export of {self.name} left no current model")
        return directory

    def _new_session(self, directory: Path, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        }.get(self.optimization, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        # Threads that finish an op sleep at once rather than spin: the machine is
        # shared with the other services, and spinning took CPU from them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(directory / onnx_export.MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._session_threads = threads
        return session

    def set_threads(self, threads: int) -> None:
        """Intra-op threads from now on (a worker child after the fork): a loaded session
        with another count is replaced (its thread pool cannot change)."""
        threads = threads or 1
        self.threads = threads
        with self._lock:
            if self._session is not None and self._session_threads != threads:
                directory = onnx_export.model_dir(self.onnx_root, self.name)
                self._session = self._new_session(directory, threads)

    # -- the model's facts --------------------------------------------------------------

    @property
    def dimension(self) -> int:
        self.load()
        return int(self._manifest["dimension"])

    @property
    def max_seq_length(self) -> int | None:
        self.load()
        return int(self._manifest["max_seq_length"])

    @property
    def special_tokens(self) -> int:
        self.load()
        return self._specials

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` without [CLS]/[SEP] and without truncation."""
        if not text:
            return 0
        self.load()
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    # -- embedding ----------------------------------------------------------------------

    def encode(self, texts: list[str], batch_size: int = 32) -> list[list[float]]:
        if not texts:
            return []
        import numpy as np

        session = self.model
        ids = self._token_ids(texts)
        lengths = [len(x) for x in ids]
        vectors: list[Any] = [None] * len(texts)
        for idx in _batches(lengths, max(1, batch_size), self._limit):
            width = lengths[idx[0]]
            input_ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, : lengths[i]] = ids[i]
                mask[row, : lengths[i]] = 1
            (hidden,) = session.run(
                ["last_hidden_state"],
                {
                    "input_ids": input_ids,
                    "attention_mask": mask,
                    "token_type_ids": np.zeros_like(input_ids),  # one sequence: segment 0
                },
            )
            for i, vector in zip(idx, _mean_pool_normalise(hidden, mask), strict=True):
                vectors[i] = vector
        return [v.tolist() for v in vectors]

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's ids as the tokenizer with truncation at the model's input length
        gives them: the text's own tokens cut to the length less the special tokens,
        then [CLS] ... [SEP] (the tokenizer's post-processor)."""
        room = self._limit - self._specials
        out = []
        for encoding in self._tokenizer.encode_batch(texts, add_special_tokens=False):
            if len(encoding.ids) > room:
                encoding.truncate(room)
            out.append(self._tokenizer.post_process(encoding).ids)
        return out

    def encode_query(self, text: str) -> list[float]:
        return self.encode([text], batch_size=1)[0]


# How texts are batched. A batch pads its texts to its longest, and on one thread ONNX
# Runtime runs one long text faster alone than in a batch (a batch's activations outgrow
# the CPU's cache): a batch holds at most one input's worth of tokens (the model's input
# length, padding included) and wastes at most PADDING_SLACK of them on padding. Against
# sentence-transformers' batches (sorted by characters, always `batch_size` texts) this
# took ~30% less CPU per chunk of the runbooks (bench/embeddings.py).
PADDING_SLACK = 0.1


def _batches(lengths: list[int], batch_size: int, budget: int) -> list[list[int]]:
    """Indexes of the texts (by token count) in batches: longest first, at most
    `batch_size` texts and `budget` tokens (padded) a batch, padding within the slack."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    real = 0
    for i in order:
        batch = batches[-1] if batches else None
        padded = lengths[batch[0]] * (len(batch) + 1) if batch else 0
        if (
            batch is not None
            and len(batch) < batch_size
            and padded <= budget
            and padded <= (1 + PADDING_SLACK) * (real + lengths[i])
        ):
            batch.append(i)
            real += lengths[i]
        else:
            batches.append([i])
            real = lengths[i]
    return batches


def _mean_pool_normalise(hidden: Any, mask: Any) -> Any:
    """sentence-transformers' mean Pooling then Normalize: the mean of the token vectors
    under the attention mask (count clamped at 1e-9), divided by its L2 norm (at least
    1e-12, as torch.nn.functional.normalize)."""
    import numpy as np

    weights = mask[..., None].astype(hidden.dtype)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled / norms
