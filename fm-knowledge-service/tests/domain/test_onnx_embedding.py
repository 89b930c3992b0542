"""The ONNX Runtime backend: the same vectors as sentence-transformers, the export kept
while current and redone when stale, and a session made before a fork used after it."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from knowledge_service.config import Settings
from knowledge_service.domain.vectors import onnx_export
from knowledge_service.domain.vectors.embedder import get_embedder
from knowledge_service.domain.vectors.onnx_embedder import (
    EmbeddingModelUnavailable,
    OnnxEmbedder,
    _batches,
)

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "etcd has no leader",
    "why",
    "Checkout returns 502 and orders logs 'remaining connection slots are reserved'",
    "Fehler: Verbindung abgelehnt — 接続が拒否されました — ошибка соединения ✓",
    "OOMKilled " * 400,  # past the model's 256 tokens: truncated the same way
    "## Diagnosis\n\nRun `kubectl -n monitoring get pods` and check the\toperator's logs.",
    "",
]


@pytest.fixture(scope="module")
def onnx() -> OnnxEmbedder:
    embedder = get_embedder(MODEL, backend="onnx")
    assert isinstance(embedder, OnnxEmbedder)
    embedder.load()
    return embedder


@pytest.fixture
def exported_copy(onnx: OnnxEmbedder, tmp_path: Path) -> Path:
    """A copy of the current export in a root of its own."""
    src = onnx_export.model_dir(onnx.onnx_root, MODEL)
    shutil.copytree(src, onnx_export.model_dir(tmp_path, MODEL))
    return tmp_path


def test_onnx_vectors_are_the_sentence_transformers_vectors(onnx: OnnxEmbedder) -> None:
    pytest.importorskip("sentence_transformers", reason="the reference needs the `torch` extra")
    ref = get_embedder(MODEL, backend="torch")
    expected = np.asarray(ref.encode(TEXTS, batch_size=3))
    docs = np.asarray(onnx.encode(TEXTS, batch_size=3))  # batches mixing lengths: padded
    queries = np.asarray([onnx.encode_query(t) for t in TEXTS])
    assert docs.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert (docs * expected).sum(axis=1).min() >= 0.999
    assert (queries * expected).sum(axis=1).min() >= 0.999
    # The chunker's token counts are the model's own.
    for text in TEXTS:
        assert onnx.count_tokens(text) == ref.count_tokens(text)
    assert (onnx.special_tokens, onnx.max_seq_length, onnx.dimension) == (2, 256, 384)
    assert onnx.name == ref.name  # the same model name: switching backends needs no re-index


def test_the_order_of_texts_is_kept_whatever_their_lengths(onnx: OnnxEmbedder) -> None:
    one_by_one = np.asarray([onnx.encode([t])[0] for t in TEXTS])
    together = np.asarray(onnx.encode(TEXTS, batch_size=2))
    assert (one_by_one * together).sum(axis=1).min() >= 0.99999


def test_an_export_is_current_until_its_source_or_recipe_changes(exported_copy: Path) -> None:
    directory = onnx_export.model_dir(exported_copy, MODEL)
    assert onnx_export.is_current(directory, MODEL)
    manifest = json.loads((directory / onnx_export.MANIFEST).read_text())
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["onnx_sha256"] == onnx_export.file_sha256(directory / onnx_export.MODEL_FILE)

    def with_manifest(**changes: object) -> bool:
        (directory / onnx_export.MANIFEST).write_text(json.dumps({**manifest, **changes}))
        return onnx_export.is_current(directory, MODEL)

    if onnx_export.source_checksum(MODEL) is not None:  # the packaged weights changed
        assert with_manifest(source_sha256="0" * 64) is False
    assert with_manifest(format=onnx_export.EXPORT_FORMAT + 1) is False
    assert with_manifest(model="other/model") is False
    assert with_manifest() is True
    (directory / onnx_export.MODEL_FILE).unlink()
    assert onnx_export.is_current(directory, MODEL) is False


def test_without_an_export_or_an_exporter_the_embedder_names_the_fix(tmp_path: Path) -> None:
    embedder = OnnxEmbedder(MODEL, tmp_path / "none", export=False)
    with pytest.raises(EmbeddingModelUnavailable, match="fm-embedding-export"):
        embedder.check_available()
    with pytest.raises(EmbeddingModelUnavailable, match="FM_EMBEDDING_BACKEND=torch"):
        embedder.encode(["x"])


def test_the_export_command_writes_a_current_model_with_the_same_vectors(
    onnx: OnnxEmbedder, tmp_path: Path
) -> None:
    pytest.importorskip("torch", reason="the export needs the `torch` extra")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [
            sys.executable,
            *("-m", "knowledge_service.export_cli"),
            *("--model", MODEL, "--out", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    directory = onnx_export.model_dir(tmp_path, MODEL)
    assert out.stdout.strip() == str(directory)
    assert onnx_export.is_current(directory, MODEL)
    fresh = OnnxEmbedder(MODEL, tmp_path, export=False)
    a, b = np.asarray(fresh.encode(TEXTS)), np.asarray(onnx.encode(TEXTS))
    assert (a * b).sum(axis=1).min() >= 0.99999


def test_an_embedder_without_an_export_makes_it_itself(
    onnx: OnnxEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lazy export (a process with the `torch` extra and no current export) runs the
    command in a child and then serves its model: it ran a module that had lost its
    command line and failed with "left no current model"."""
    pytest.importorskip("torch", reason="the export needs the `torch` extra")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fresh = OnnxEmbedder(MODEL, tmp_path, export=True)
    a, b = np.asarray(fresh.encode(TEXTS)), np.asarray(onnx.encode(TEXTS))
    assert onnx_export.is_current(onnx_export.model_dir(tmp_path, MODEL), MODEL)
    assert (a * b).sum(axis=1).min() >= 0.99999


def _child(embedder: OnnxEmbedder, threads: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    embedder.set_threads(threads)
    queue.put((embedder.encode(TEXTS, batch_size=4), len(os.listdir("/proc/self/task"))))


@pytest.mark.parametrize("threads", [1, 2])
def test_a_session_made_before_a_fork_serves_the_children(onnx: OnnxEmbedder, threads: int) -> None:
    # The worker's main process loads a one-thread session (no pool) before forking.
    parent = OnnxEmbedder(MODEL, onnx.onnx_root, threads=1)
    parent.load()
    expected = np.asarray(parent.encode(TEXTS, batch_size=4))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(parent, threads, queue))
    proc.start()
    vectors, _tasks = queue.get(timeout=120)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert (np.asarray(vectors) * expected).sum(axis=1).min() >= 0.99999


def test_settings_default_to_onnx_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_onnx_dir=None)
    assert settings.embedding_backend == "onnx"
    assert settings.embedding_onnx_root == tmp_path / "models"


def test_token_ids_are_the_truncating_tokenizers(onnx: OnnxEmbedder) -> None:
    # One tokenizer serves token counts and embedding; it truncates as the tokenizer
    # configured for the model's input length would ([CLS] text[:254] [SEP]).
    from tokenizers import Tokenizer

    directory = onnx_export.model_dir(onnx.onnx_root, MODEL)
    reference = Tokenizer.from_file(str(directory / onnx_export.TOKENIZER_FILE))
    reference.enable_truncation(max_length=256)
    reference.no_padding()
    ids = onnx._token_ids(TEXTS)
    assert ids == [e.ids for e in reference.encode_batch(TEXTS)]
    assert max(len(x) for x in ids) == 256  # the long text was cut


def test_batches_pad_little_and_hold_one_input_of_tokens() -> None:
    lengths = [256, 20, 250, 18, 17, 18, 5, 3, 120, 118]
    batches = _batches(lengths, batch_size=8, budget=256)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [[lengths[i] for i in b] for b in batches] == [
        [256],
        [250],
        [120, 118],
        [20, 18, 18, 17],
        [5],
        [3],
    ]
    # The batch size still caps a batch of equal texts.
    assert [len(b) for b in _batches([10] * 10, batch_size=4, budget=256)] == [4, 4, 2]
