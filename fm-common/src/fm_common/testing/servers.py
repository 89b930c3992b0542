"""Run an ASGI app under a real uvicorn server in a background thread, on a free port.

For tests where one service must reach another over real HTTP (e.g. the auth service
opening a session in the session service) without starting whole processes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

from fm_common.testing.ports import free_port


class AppServer:
    """`AppServer(app).start()`; `url`; `stop()` (runs the app's lifespan both ways)."""

    def __init__(
        self,
        app: Any,
        port: int | None = None,
        *,
        lifespan: Literal["on", "off"] = "on",
        production_loop: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        """`production_loop`: uvloop + httptools, as the services run, for timing-sensitive
        proxy tests; `lifespan="off"` for stand-in apps with nothing to open; `options`:
        more uvicorn settings (e.g. fm_common.app.uvicorn_options' proxy and TLS ones)."""
        import uvicorn

        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan=lifespan,
            loop="uvloop" if production_loop else "asyncio",
            http="httptools" if production_loop else "auto",
            **(options or {}),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.scheme = "https" if (options or {}).get("ssl_certfile") else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the app server exited while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app server did not start in {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
