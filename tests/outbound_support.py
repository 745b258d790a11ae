"""Backends that check the credential the gateway sends them, and a gateway starter that keeps the app.

A `CheckedBackend` wraps any ASGI app (an MCP SDK server, a recorder) and answers
401 unless the request carries what the test expects: a token of the emulated
tenant (signature, issuer, audience, expiry) with the right scope / roles /
user / app, or a header with the current secret value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import jwt
import pytest
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from emulators.entra import EntraEmulator
from shared.app import Gateway, create_app
from shared.config import parse_config

Check = Callable[[Headers], dict[str, Any]]
"""Returns what it learned (claims, ...) or raises AssertionError saying what was wrong."""

PING = b'{"jsonrpc":"2.0","id":7,"method":"ping"}'
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@dataclass
class CheckedBackend:
    app: ASGIApp
    check: Check
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        self.seen_headers.append(dict(headers))
        try:
            self.accepted.append(self.check(headers))
        except (AssertionError, jwt.InvalidTokenError) as refusal:
            self.rejected.append(str(refusal))
            await JSONResponse({"error": f"backend refused: {refusal}"}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def bearer_token(headers: Headers) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    assert scheme == "Bearer" and token, "no bearer token"
    return token


def entra_token_check(
    entra: EntraEmulator,
    *,
    audience: str,
    issuer: str,
    claims: dict[str, Any] | None = None,
) -> Check:
    """A token of this tenant for `audience` from `issuer`, carrying `claims` (exact values)."""

    def check(headers: Headers) -> dict[str, Any]:
        token = bearer_token(headers)
        found = entra.validate(token, audiences=[audience])
        assert found["iss"] == issuer, f"issuer {found['iss']!r}"
        for name, value in (claims or {}).items():
            assert found.get(name) == value, f"claim {name}={found.get(name)!r}, wanted {value!r}"
        return found

    return check


def header_check(name: str, expected: Callable[[], str]) -> Check:
    def check(headers: Headers) -> dict[str, Any]:
        assert headers.get(name) == expected(), f"header {name} is not the current secret"
        assert len(headers.getlist(name)) == 1, f"{name} sent more than once"
        return {name: headers.get(name)}

    return check


@pytest.fixture
def run_gateway(start_server) -> Callable[..., tuple[str, Gateway]]:
    """Like start_gateway, but also hands back the Gateway object (its caches and clients)."""

    def start(document: dict[str, Any], environ: dict[str, str] | None = None) -> tuple[str, Gateway]:
        app = create_app(parse_config(document), environ=environ or {})
        return start_server(app).base_url, app

    return start


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[list[str]]:
    """Every log line of every logger (DEBUG and up, any thread), formatted with tracebacks."""
    handler = _Collect()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    # the root logger, and those that may not propagate to it (uvicorn; the gateway's own
    # once configure_logging has run)
    loggers = [logging.getLogger(n) for n in ("", "shared", "uvicorn", "uvicorn.error")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
