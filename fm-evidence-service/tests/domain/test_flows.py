"""Indexing is queued after the commit, survives a down broker, and crash leftovers go."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
import redis

from evidence_service.domain.evidence.flows import (
    requeue_unindex,
    requeue_unindexed,
    sweep_orphans,
)
from fm_common.testing.ports import free_port
from fm_common.testing.queues import queued
from fm_common.testing.s3_server import storage_backend


def _queued(redis_url: str) -> list[dict]:
    """The ingest queue's messages, in the order the worker takes them."""
    return [{"task": q["task"], "kwargs": q["kwargs"]} for q in queued(redis_url, "ingest")]


async def test_text_upload_queues_index_task_with_ids(kit, alice, settings):
    file = (await kit.upload(alice)).json()
    assert _queued(settings.redis_url) == [
        {
            "task": "knowledge.index_evidence",
            "kwargs": {"file_id": file["file_id"], "case_id": alice.case_id,
                       "owner_id": alice.user_id},
        }
    ]  # fmt: skip


async def test_a_users_many_files_do_not_hold_another_users_first(kit, alice, bob, settings):
    # Issue 16 item 5: one user's indexing held both worker children while other users'
    # tasks waited. Each file is queued with its rank among its owner's queued files, so
    # the worker takes them round-robin by rank (ADR 0136).
    mine = [
        (await kit.upload(alice, f"ERROR line {i}\n".encode() * 20)).json()["file_id"]
        for i in range(3)
    ]
    theirs = (await kit.upload(bob)).json()["file_id"]
    order = [q["kwargs"]["file_id"] for q in _queued(settings.redis_url)]
    assert order == [mine[0], theirs, mine[1], mine[2]]


async def test_images_are_queued_for_ocr_and_duplicates_queue_nothing_more(kit, alice, settings):
    image = (await kit.upload(alice, kit.png, "s.png")).json()["file_id"]
    await kit.upload(alice)
    await kit.upload(alice)
    queued = _queued(settings.redis_url)
    assert len(queued) == 2
    assert image in {q["kwargs"]["file_id"] for q in queued}


async def test_broker_down_keeps_upload_and_requeue_sends_it_later(app, kit, alice, settings):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    object.__setattr__(app.state.uploads, "settings", settings.model_copy(
        update={"broker_url": dead}))  # fmt: skip
    resp = await kit.upload(alice)
    assert resp.status_code == 201
    assert _queued(settings.redis_url) == []
    requeue_settings = settings.model_copy(update={"requeue_after_seconds": 0})
    assert await requeue_unindexed(requeue_settings, app.state.sessionmaker) == 1
    [queued] = _queued(settings.redis_url)
    assert queued["kwargs"]["file_id"] == resp.json()["file_id"]
    # Queued once: a second pass finds nothing left to send.
    assert await requeue_unindexed(requeue_settings, app.state.sessionmaker) == 0


@pytest.mark.skipif(
    storage_backend() != "local", reason="backdates files on disk; S3: fm-common test_blobs"
)
async def test_sweep_removes_stale_temp_and_unreferenced_files_only(app, kit, alice, settings):
    kept = (await kit.upload(alice)).json()["file_id"]
    store = app.state.file_store
    blobs = store.blobs
    stale_temp = blobs.tmp_dir / "dead.part"
    stale_temp.write_bytes(b"half")
    orphan_id = "0f0f0f0f-0000-0000-0000-000000000000"
    blobs.put(store.key_for(orphan_id), b"no row")
    orphan = blobs.path_for(store.key_for(orphan_id))
    fresh_temp = blobs.tmp_dir / "live.part"
    fresh_temp.write_bytes(b"uploading")
    old = time.time() - 7200
    for path in (stale_temp, orphan, blobs.path_for(store.key_for(kept))):
        os.utime(path, (old, old))
    assert await sweep_orphans(settings, app.state.sessionmaker, store) == 2
    assert not stale_temp.exists()
    assert not orphan.exists()
    assert fresh_temp.exists()
    assert store.exists(kept)


async def test_sweep_keeps_files_with_rows_and_drops_files_without(app, kit, alice, settings):
    """On either backend: with no grace period, the row-less file goes, the other stays."""
    kept = (await kit.upload(alice)).json()["file_id"]
    store = app.state.file_store
    orphan_id = "0f0f0f0f-0000-0000-0000-000000000001"
    store.blobs.put(store.key_for(orphan_id), b"no row")
    now = settings.model_copy(update={"sweep_after_seconds": 0})
    time.sleep(0.01)
    assert await sweep_orphans(now, app.state.sessionmaker, store) == 1
    assert not store.exists(orphan_id)
    assert store.exists(kept)


def _maintenance_queue(redis_url: str) -> list[dict]:
    client = redis.Redis.from_url(redis_url)
    try:
        messages = [json.loads(raw) for raw in client.lrange("maintenance", 0, -1)]
    finally:
        client.close()
    return [
        {"task": m["headers"]["task"], "kwargs": json.loads(base64.b64decode(m["body"]))[1]}
        for m in messages
    ]


async def test_deleting_a_text_file_queues_its_unindex_after_the_commit(kit, alice, settings):
    file_id = (await kit.upload(alice)).json()["file_id"]
    resp = await kit.client.delete(f"/api/v1/evidence/{file_id}", headers=alice.headers)
    assert resp.status_code == 204
    assert _maintenance_queue(settings.redis_url) == [
        {
            "task": "knowledge.unindex_evidence",
            "kwargs": {"file_id": file_id, "case_id": alice.case_id, "owner_id": alice.user_id},
        }
    ]


async def test_deleting_an_image_queues_its_unindex(kit, alice, settings):
    """An image's OCR text is indexed too: its chunks leave with it."""
    file_id = (await kit.upload(alice, kit.png, "s.png")).json()["file_id"]
    resp = await kit.client.delete(f"/api/v1/evidence/{file_id}", headers=alice.headers)
    assert resp.status_code == 204
    [queued] = _maintenance_queue(settings.redis_url)
    assert queued["kwargs"]["file_id"] == file_id


async def test_broker_down_at_delete_keeps_the_unindex_and_requeue_sends_it(
    app, kit, alice, settings
):
    file_id = (await kit.upload(alice)).json()["file_id"]
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app.state.settings = settings.model_copy(update={"broker_url": dead})
    resp = await kit.client.delete(f"/api/v1/evidence/{file_id}", headers=alice.headers)
    assert resp.status_code == 204
    assert _maintenance_queue(settings.redis_url) == []
    requeue_settings = settings.model_copy(update={"requeue_after_seconds": 0})
    assert await requeue_unindex(requeue_settings, app.state.sessionmaker) == 1
    [queued] = _maintenance_queue(settings.redis_url)
    assert queued["kwargs"]["file_id"] == file_id
    # Sent once: the outbox row is gone.
    assert await requeue_unindex(requeue_settings, app.state.sessionmaker) == 0
