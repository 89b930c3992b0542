"""The blob stores: the local directory and S3 (a real moto server process), the same
behaviours on both, then what is S3's own (parts, aborts, a server that dies)."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fm_common.blobs import (
    BlobNotFound,
    BlobStore,
    LocalBlobStore,
    StoreUnavailable,
    open_blob_store,
    storage_error,
)
from fm_common.blobs.s3 import MIN_PART_SIZE, S3BlobStore
from fm_common.errors import Unavailable
from fm_common.settings import BaseServiceSettings, parse_storage_url
from fm_common.testing.s3_server import S3Server


def _s3(s3_server: S3Server, settings: dict[str, Any], **kw: Any) -> S3BlobStore:
    bucket = settings["storage_url"].removeprefix("s3://").split("/")[0]
    return s3_server.store(bucket, **kw)  # type: ignore[no-any-return]


@pytest.fixture(params=["local", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        store: BlobStore = LocalBlobStore(tmp_path / "blobs")
    else:
        store = _s3(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_storage"))
    yield store
    store.close()


def test_written_blob_is_invisible_until_committed_then_reads_back(blobs):
    data = [b"first line\n", b"second line\n" * 1000]
    writer = blobs.begin("files/ab/abc")
    writer.write(data)
    assert not blobs.exists("files/ab/abc")
    writer.commit()
    assert blobs.exists("files/ab/abc")
    assert blobs.read("files/ab/abc") == b"".join(data)
    assert writer.size == sum(map(len, data))
    assert writer.sha256 == hashlib.sha256(b"".join(data)).hexdigest()
    assert [b.key for b in blobs.list_blobs("files/")] == ["files/ab/abc"]
    assert blobs.pending() == []


def test_aborted_upload_leaves_nothing(blobs):
    writer = blobs.begin("files/gone")
    writer.write(b"x" * 1000)
    writer.abort()
    writer.abort()  # twice is fine
    assert blobs.list_blobs() == []
    assert blobs.pending() == []
    with pytest.raises(OSError, match="aborted"):
        writer.write(b"more")


def test_missing_key_is_blob_not_found_a_file_not_found_error(blobs):
    with pytest.raises(BlobNotFound):
        blobs.open("files/none")
    with pytest.raises(FileNotFoundError):
        blobs.read("text/none.txt", max_bytes=10)
    with pytest.raises(BlobNotFound), blobs.local_copy("files/none"):
        pass
    assert not blobs.exists("files/none")
    blobs.delete("files/none")  # idempotent


def test_read_stops_at_max_bytes_and_local_copy_has_the_bytes(blobs):
    blobs.put("text/doc.txt", b"0123456789" * 100)
    assert blobs.read("text/doc.txt", max_bytes=15) == b"012345678901234"
    with blobs.local_copy("text/doc.txt") as path:
        assert path.read_bytes() == b"0123456789" * 100
        copy = path
    if isinstance(blobs, S3BlobStore):
        assert not copy.exists()  # the temp copy is removed on exit


def test_list_by_prefix_and_age_and_delete_many(blobs):
    for key in ("files/a", "files/b", "text/a.txt"):
        blobs.put(key, b"x")
    assert [b.key for b in blobs.list_blobs("files/")] == ["files/a", "files/b"]
    assert blobs.list_blobs("files/", older_than=3600) == []
    time.sleep(1.1)  # S3's LastModified has one-second resolution
    assert len(blobs.list_blobs(older_than=0.5)) == 3
    blobs.delete_many(["files/a", "text/a.txt", "files/never"])
    assert [b.key for b in blobs.list_blobs()] == ["files/b"]


def test_keys_that_leave_the_store_are_refused(blobs):
    for key in ("../escape", "/abs", "files//x", "files/./x", ""):
        with pytest.raises(ValueError, match="not a blob key"):
            blobs.begin(key)


# -- S3 ---------------------------------------------------------------------------------
def test_file_larger_than_a_part_goes_up_in_parts_and_matches_its_sha256(s3_server, s3_storage):
    store = _s3(s3_server, s3_storage, part_size=MIN_PART_SIZE)
    data = os.urandom(2 * MIN_PART_SIZE + 12345)
    writer = store.begin("files/big")
    # Uneven chunks, so part boundaries fall inside chunks.
    for start in range(0, len(data), 777_777):
        writer.write([data[start : start + 777_777]])
    assert len(writer._parts) == 2  # two full parts sent while writing
    assert store.pending() == ["files/big"]  # in flight: a multipart upload, not an object
    assert store.list_blobs() == []
    writer.commit()
    stored = store.read("files/big")
    assert hashlib.sha256(stored).hexdigest() == writer.sha256 == hashlib.sha256(data).hexdigest()
    assert store.list_blobs()[0].size == len(data)
    assert store.pending() == []


def test_exactly_one_part_is_one_multipart_part(s3_server, s3_storage):
    store = _s3(s3_server, s3_storage, part_size=MIN_PART_SIZE)
    data = b"p" * MIN_PART_SIZE
    writer = store.begin("files/one")
    writer.write(data)
    writer.commit()
    assert len(writer._parts) == 1
    assert store.read("files/one") == data


def test_abort_of_a_multipart_upload_leaves_no_upload_and_no_object(s3_server, s3_storage):
    store = _s3(s3_server, s3_storage, part_size=MIN_PART_SIZE)
    writer = store.begin("files/cut")
    writer.write(b"z" * (MIN_PART_SIZE + 10))
    assert store.pending() == ["files/cut"]
    writer.abort()
    assert store.pending() == []
    assert store.list_blobs() == []


def test_background_abort_after_a_part_in_flight_leaves_nothing(s3_server, s3_storage):
    store = _s3(s3_server, s3_storage, part_size=MIN_PART_SIZE)
    writer = store.begin("files/cut")
    writer.write(b"z" * (MIN_PART_SIZE + 10))
    writer.abort(wait=False)
    deadline = time.monotonic() + 10
    while store.pending():
        assert time.monotonic() < deadline, "the background abort never ran"
        time.sleep(0.05)
    assert store.list_blobs() == []


def test_sweep_aborts_stale_uploads_but_not_ones_still_sending_parts(s3_server, s3_storage):
    store = _s3(s3_server, s3_storage, part_size=MIN_PART_SIZE)
    live = store.begin("files/live")
    live.write(b"l" * MIN_PART_SIZE)
    dead = store.begin("files/dead")
    dead.write(b"d" * MIN_PART_SIZE)
    assert store.sweep_pending(3600) == 0
    # A cutoff in the future: every part is "old", so both uploads count as dead.
    assert store.sweep_pending(-60) == 2
    assert store.pending() == []


def test_missing_bucket_is_store_unavailable_not_blob_not_found(s3_server, s3_storage):
    store = _s3(s3_server, {**s3_storage, "storage_url": "s3://no-such-bucket-here"})
    with pytest.raises(StoreUnavailable):
        store.check()
    with pytest.raises(StoreUnavailable):
        store.put("files/x", b"x")


def test_killed_server_is_store_unavailable_and_answered_503(tmp_path):
    server = S3Server().start()
    try:
        bucket = server.create_bucket()
        store = server.store(bucket, connect_timeout=1, max_attempts=1)
        store.put("files/kept", b"kept")
        writer = store.begin("files/new")
        writer.write(b"bytes")
        server.kill()
        for call in (
            lambda: store.read("files/kept"),
            lambda: store.put("files/x", b"x"),
            writer.commit,
            store.check,
            lambda: store.list_blobs(),
        ):
            with pytest.raises(StoreUnavailable) as caught:
                call()
            assert caught.value.errno == errno.EIO
        answer = storage_error(caught.value, retry_after=9)
        assert isinstance(answer, Unavailable)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "9"
    finally:
        server.stop()


def test_full_disk_is_507_and_other_disk_errors_503():
    assert storage_error(OSError(errno.ENOSPC, "full")).status_code == 507
    assert storage_error(OSError(errno.EIO, "io")).status_code == 503


# -- settings -----------------------------------------------------------------------------
def test_storage_url_selects_the_backend(tmp_path):
    local = BaseServiceSettings(data_dir=tmp_path)
    assert isinstance(open_blob_store(local, "evidence"), LocalBlobStore)
    assert (tmp_path / "evidence" / "tmp").is_dir()
    assert parse_storage_url("", tmp_path).path == tmp_path
    assert parse_storage_url("/srv/blobs", tmp_path).path == Path("/srv/blobs")
    assert parse_storage_url("file:///srv/blobs", tmp_path).path == Path("/srv/blobs")
    s3 = parse_storage_url("s3://bucket/some/prefix/", tmp_path)
    assert (s3.scheme, s3.bucket, s3.prefix) == ("s3", "bucket", "some/prefix/")
    assert parse_storage_url("s3://bucket", tmp_path).prefix == ""


def test_s3_settings_open_an_s3_store_under_the_area(s3_storage, tmp_path):
    settings = BaseServiceSettings(data_dir=tmp_path, **s3_storage)
    store = open_blob_store(settings, "knowledge")
    assert isinstance(store, S3BlobStore)
    assert store.location.endswith("/fm/knowledge/")
    store.put("files/doc", b"doc")
    assert store.read("files/doc") == b"doc"
    secret = s3_storage["storage_s3_secret_access_key"]
    assert secret not in str(settings.redacted())


@pytest.mark.parametrize("url", ["s3://", "ftp://host/x", "s3:///prefix"])
def test_bad_storage_urls_are_refused(url, tmp_path):
    with pytest.raises(ValueError, match="storage"):
        BaseServiceSettings(data_dir=tmp_path, storage_url=url)
