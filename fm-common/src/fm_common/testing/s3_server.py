"""A real S3-protocol server process (moto's server) on a free port, for the S3 backend.

`moto[server]` (PyPI) is the S3 implementation botocore's own tests use; it runs here as
a separate process speaking the S3 REST protocol over HTTP, so the real boto3 client,
its signing, multipart uploads and streamed bodies all go over a socket. It stands in
for AWS S3, MinIO and Ceph RGW (what differs between them is outside what we use:
PutObject, multipart uploads, GetObject with Range, DeleteObjects, ListObjectsV2,
ListMultipartUploads, HeadBucket).

Tests choose the backend with FM_TEST_STORAGE=s3 (default: local); `make test` runs the
evidence and knowledge suites once more with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from typing import Any

from fm_common.testing.ports import free_port, wait_for_port

ACCESS_KEY = "fm-test-access-key"
SECRET_KEY = "fm-test-secret-key"
REGION = "us-east-1"


def storage_backend() -> str:
    """The backend the storage-dependent suites run on: `local` or `s3` (FM_TEST_STORAGE)."""
    value = os.environ.get("FM_TEST_STORAGE", "local").strip().lower() or "local"
    if value not in ("local", "s3"):
        raise RuntimeError(f"FM_TEST_STORAGE must be local or s3, not {value!r}")
    return value


class S3Server:
    """`S3Server().start()`; `create_bucket()`; `settings(bucket)`; `kill()` / `stop()`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def client(self) -> Any:
        """A boto3 S3 client of this server (made once)."""
        if self._client is None:
            from fm_common.blobs.s3 import _client

            self._client = _client(
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            )
        return self._client

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or f"fm-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def settings(self, bucket: str, prefix: str = "fm") -> dict[str, Any]:
        """The FM_STORAGE_* settings (as keyword arguments) of a store in `bucket`."""
        return {
            "storage_url": f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
            "storage_s3_endpoint_url": self.endpoint_url,
            "storage_s3_region": REGION,
            "storage_s3_access_key_id": ACCESS_KEY,
            "storage_s3_secret_access_key": SECRET_KEY,
        }

    def store(self, bucket: str, prefix: str = "t/", **options: Any) -> Any:
        """An S3BlobStore on this server (`options`: part_size, timeouts, attempts)."""
        from fm_common.blobs.s3 import S3BlobStore

        return S3BlobStore(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=self.endpoint_url,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            **options,
        )

    def env(self, bucket: str, prefix: str = "fm") -> dict[str, str]:
        """The same settings as FM_* environment variables (for processes a test starts)."""
        return {f"FM_{k.upper()}": str(v) for k, v in self.settings(bucket, prefix).items()}

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): the store is down."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
