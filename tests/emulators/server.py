"""Run an ASGI app with uvicorn in a background thread on 127.0.0.1.

Why: the SDKs under test do real HTTP(S); the emulators must be real sockets.
Readiness is signalled by a ``threading.Event`` set from uvicorn's own
``startup()`` (no polling, no sleeps); ``stop()`` asks uvicorn to exit and
joins the thread, so no thread outlives its test.  ``start()`` after
``stop()`` rebinds the same port (SO_REUSEADDR), which is how the emulators
model "endpoint down, then back".
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from emulators.tls import TestPKI

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class _SignallingServer(uvicorn.Server):
    """uvicorn.Server that sets an event once its sockets listen."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # An idle keep-alive TLS connection would otherwise wait for the peer's
        # close_notify (which an idle client never sends) until the graceful
        # timeout: abort idle transports; in-flight requests still complete.
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()
        await super().shutdown(sockets=sockets)


class BackgroundServer:
    """A uvicorn server on 127.0.0.1, in a daemon thread, optionally with TLS."""

    host = "127.0.0.1"

    def __init__(self, app: ASGIApp, *, pki: TestPKI | None = None, port: int = 0, lifespan: str = "off") -> None:
        self.app = app
        self.lifespan = lifespan
        self.pki = pki
        self.port = port
        self._server: _SignallingServer | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.pki else "http"

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("server was never started")
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "BackgroundServer":
        if self.running:
            return self
        kwargs: dict[str, Any] = {}
        if self.pki:
            kwargs["ssl_certfile"] = str(self.pki.server_cert_file)
            kwargs["ssl_keyfile"] = str(self.pki.server_key_file)
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,  # 0 on first start: the kernel picks; then reused
            loop="asyncio",
            http="h11",
            lifespan=self.lifespan,
            proxy_headers=False,  # like the gateway's own server: X-Forwarded-For is not trusted
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            **kwargs,
        )
        ready = threading.Event()
        server = _SignallingServer(config, ready)
        self._error = None

        def run() -> None:
            try:
                asyncio.run(server.serve())
            except BaseException as exc:  # SystemExit on bind failure included
                self._error = exc
            finally:
                ready.set()  # never leave start() waiting

        thread = threading.Thread(target=run, name=f"emulator-{type(self.app).__name__}", daemon=True)
        thread.start()
        if not ready.wait(_START_TIMEOUT_S) or not server.started:
            server.should_exit = True
            thread.join(_STOP_TIMEOUT_S)
            raise RuntimeError(f"uvicorn failed to start: {self._error!r}")
        self._server, self._thread = server, thread
        sock = server.servers[0].sockets[0]
        self.port = int(sock.getsockname()[1])
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(_STOP_TIMEOUT_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(_STOP_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError("uvicorn thread did not stop")

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
