"""Fault injection and request logging shared by every emulator.

Why: tests must prove the gateway copes with a flaky identity provider or
vault (500, 429 + Retry-After, connection refused) and must be able to assert
exact request counts ("exactly one token request").  Both are implemented as
one pure-ASGI middleware so handlers stay protocol-only.  State is guarded by
a lock because tests mutate it from their own thread while uvicorn serves in
another.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class _Fault:
    remaining: int
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]
    path_prefix: str | None


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: str
    status: int
    injected: bool


@dataclass
class RequestLog:
    """Every HTTP request an emulator saw, with its final status."""

    entries: list[LoggedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.entries.append(entry)

    def count(self, *, path: str | None = None, path_prefix: str | None = None, method: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for e in self.entries
                if (path is None or e.path == path)
                and (path_prefix is None or e.path.startswith(path_prefix))
                and (method is None or e.method == method)
            )

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()


class FaultInjector:
    """Queue of "answer the next N requests with this status" faults."""

    def __init__(self, error_body: Callable[[int], dict[str, object]] | None = None) -> None:
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._error_body = error_body or (lambda status: {"error": {"code": str(status), "message": "injected"}})

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        retry_after: int | None = None,
        body: dict[str, object] | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status``.

        ``retry_after`` adds a ``Retry-After`` header (seconds), as Entra and
        Key Vault send with 429.  ``path_prefix`` restricts the fault to some
        routes (e.g. only the token endpoint, not discovery).
        """
        headers = [(b"content-type", b"application/json")]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        payload = json.dumps(body if body is not None else self._error_body(status)).encode()
        with self._lock:
            self._faults.append(_Fault(n, status, payload, headers, path_prefix))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def take(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.path_prefix is None or path.startswith(fault.path_prefix)):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
            return None


class FaultAndLogMiddleware:
    """Pure ASGI middleware: consult the injector, then log the outcome."""

    def __init__(self, app: ASGIApp, faults: FaultInjector, log: RequestLog) -> None:
        self.app = app
        self.faults = faults
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        fault = self.faults.take(path)
        if fault is not None:
            # log before answering: the client may assert as soon as it has the response
            self.log.add(LoggedRequest(method, path, query, fault.status, True))
            await send({"type": "http.response.start", "status": fault.status, "headers": fault.headers})
            await send({"type": "http.response.body", "body": fault.body})
            return
        logged = False

        async def send_wrapper(message: Message) -> None:
            nonlocal logged
            if message["type"] == "http.response.start" and not logged:
                logged = True
                self.log.add(LoggedRequest(method, path, query, int(message["status"]), False))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not logged:
                self.log.add(LoggedRequest(method, path, query, 500, False))
