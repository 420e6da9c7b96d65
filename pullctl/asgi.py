"""Run an ASGI app under uvicorn on a loopback port in a background thread.

Used by ``pullctl demo`` (the demo upstream and MCP server) and by the test suite (upstreams,
emulators). ``serve`` runs uvicorn in the foreground instead.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class BackgroundServer:
    """An ASGI app served by uvicorn from a daemon thread; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only for it (no 40 ms delayed ACKs)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="auto", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"asgi-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"ASGI server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[BackgroundServer]:
    """Serve ``app`` for the duration of the ``with`` block."""
    server = BackgroundServer(app, host, port).start()
    try:
        yield server
    finally:
        server.stop()
