"""Header hygiene, both ways.

Up: everything the MCP client sent, less hop-by-hop headers and every inbound
credential, plus X-Forwarded-* and a traceparent. Down: everything the backend
sent, less hop-by-hop headers and cookies. MCP headers (Mcp-Session-Id,
MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name, Mcp-Param-*) pass
untouched because nothing here names them.
"""

from __future__ import annotations

import functools
import random
from typing import Iterable, Sequence

from starlette.types import Scope

from .config import HOP_BY_HOP

RawHeaders = Sequence[tuple[bytes, bytes]]

_HOP_BY_HOP = frozenset(h.encode() for h in HOP_BY_HOP)

INBOUND_CREDENTIAL_HEADERS = frozenset(
    {
        b"authorization",
        b"cookie",
        b"ocp-apim-subscription-key",
        b"proxy-authorization",
        # App Service authentication ("Easy Auth") injects the caller's identity and tokens.
        b"x-ms-client-principal",
        b"x-ms-client-principal-id",
        b"x-ms-client-principal-name",
        b"x-ms-client-principal-idp",
        b"x-ms-token-aad-access-token",
        b"x-ms-token-aad-id-token",
        b"x-ms-token-aad-refresh-token",
    }
)
"""Never forwarded. Auth stages add their configured header names to this set."""

_REPLACED_UP = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})
# The gateway checks Origin itself; passed on, a browser's Origin would trip the
# backend's own DNS-rebinding check, which knows nothing of the gateway's clients.
_CHECKED_HERE = frozenset({b"origin"})
_DROPPED_DOWN = _HOP_BY_HOP | {b"set-cookie", b"server", b"date"}


def _without_connection_named(
    kept: list[tuple[bytes, bytes]], message: RawHeaders
) -> tuple[list[tuple[bytes, bytes]], frozenset[bytes]]:
    """Headers named in Connection are hop-by-hop for this message too (RFC 9110 7.6.1).

    Called only when a Connection header was seen: `kept` has lower-case names.
    """
    named: set[bytes] = set()
    for name, value in message:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return [(name, value) for name, value in kept if name not in named], frozenset(named)


def new_traceparent() -> bytes:
    """A fresh W3C traceparent, so the backend's logs can be joined to ours.

    Trace ids need to be unique, not secret: no system call per request for them.
    """
    return b"00-%032x-%016x-01" % (random.getrandbits(128), random.getrandbits(64))


@functools.lru_cache(maxsize=256)
def _dropped_up(dropped: frozenset[bytes]) -> frozenset[bytes]:
    """Everything never forwarded up, for one server's credential names (computed once)."""
    return _HOP_BY_HOP | _REPLACED_UP | _CHECKED_HERE | dropped


def upstream_headers(
    inbound: RawHeaders,
    *,
    client_ip: str,
    scheme: str,
    dropped: frozenset[bytes] = INBOUND_CREDENTIAL_HEADERS,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> list[tuple[bytes, bytes]]:
    """Headers for the backend request; `dropped` holds lower-case names never forwarded,
    `extra` the server's configured headers (lower-case names, encoded)."""
    drop = _dropped_up(dropped)
    out: list[tuple[bytes, bytes]] = []
    host = b""
    forwarded_for = b""
    proto = scheme.encode()
    has_traceparent = False
    has_accept_encoding = False
    has_connection = False
    for name, value in inbound:
        lower = name.lower()
        if lower == b"host":
            host = value
        elif lower == b"x-forwarded-for":
            forwarded_for = value
        elif lower == b"x-forwarded-proto":
            proto = value
        if lower in drop:
            has_connection = has_connection or lower == b"connection"
            continue
        if lower == b"traceparent":
            has_traceparent = True
        elif lower == b"accept-encoding":
            has_accept_encoding = True
        out.append((lower, value))
    if has_connection:
        out, named = _without_connection_named(out, inbound)
        has_traceparent = has_traceparent and b"traceparent" not in named
        has_accept_encoding = has_accept_encoding and b"accept-encoding" not in named
    chain = forwarded_for + b", " + client_ip.encode() if forwarded_for else client_ip.encode()
    out.append((b"x-forwarded-for", chain))
    out.append((b"x-forwarded-proto", proto))
    if host:
        out.append((b"x-forwarded-host", host))
    if not has_traceparent:
        out.append((b"traceparent", new_traceparent()))
    if not has_accept_encoding:
        # Bytes pass through undecoded: never let the HTTP client ask for a compression
        # the MCP client did not.
        out.append((b"accept-encoding", b"identity"))
    out.extend(extra)
    return out


def downstream_headers(upstream: RawHeaders) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers for the client, and the backend's Content-Type (b"" if none)."""
    out: list[tuple[bytes, bytes]] = []
    content_type = b""
    has_connection = False
    for name, value in upstream:
        lower = name.lower()
        if lower in _DROPPED_DOWN:
            has_connection = has_connection or lower == b"connection"
            continue
        if lower == b"content-type":
            content_type = value
        out.append((lower, value))
    if has_connection:
        out, _ = _without_connection_named(out, upstream)
    return out, content_type


def header_map(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name, built once per request.

    Starlette's Headers scans the whole list on every lookup; the pipeline looks
    up half a dozen names, so one dict is cheaper. ASGI servers send names lower-case.
    """
    cached = scope.get("mcp_gateway.headers")
    if cached is None:
        cached = scope["mcp_gateway.headers"] = dict(scope["headers"])
    return cached


def get_header(scope: Scope, name: bytes) -> str | None:
    value = header_map(scope).get(name)
    return value.decode("latin-1") if value is not None else None


def strip_query_params(query: bytes, names: frozenset[bytes]) -> bytes:
    """The query string without credential parameters (e.g. subscription-key)."""
    if not query or not names:
        return query
    kept = [part for part in query.split(b"&") if part.split(b"=", 1)[0].lower() not in names]
    return b"&".join(kept)
