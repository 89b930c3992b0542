"""The container healthcheck: `python -m fm_common.healthcheck [/path]`.

GETs http://127.0.0.1:$FM_IMAGE_PORT/path (default /health), or https when the gateway
serves TLS itself (FM_GATEWAY_TLS_CERT_FILE set; the certificate is not verified, the
check asks only whether this process answers). Exit 0 when it answers 2xx; an image
without a port (the worker) is healthy by this check (compose pings Celery instead).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request


def main(argv: list[str]) -> int:
    port = os.environ.get("FM_IMAGE_PORT", "")
    if not port:
        return 0
    path = argv[0] if argv else "/health"
    tls = os.environ.get("FM_MODULE") == "gateway" and bool(
        os.environ.get("FM_GATEWAY_TLS_CERT_FILE")
    )
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return 0 if 200 <= resp.status < 300 else 1
    except Exception as exc:  # any failure is "unhealthy"; say why for `docker inspect`
        sys.stderr.write(f"unhealthy: {url}: {exc!r}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
