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
import re
from typing import Iterable, Sequence
from urllib.parse import unquote_plus

from starlette.types import Scope

from .config import HOP_BY_HOP
from .errors import BadRequest

RawHeaders = Sequence[tuple[bytes, bytes]]

_HOP_BY_HOP = frozenset(h.encode() for h in HOP_BY_HOP)

INBOUND_CREDENTIAL_HEADERS = frozenset(
    {
        b"authorization",
        b"cookie",
        b"ocp-apim-subscription-key",
        b"proxy-authorization",
    }
)
"""Never forwarded. Auth stages add their configured header names to this set."""

INBOUND_CREDENTIAL_PREFIXES = (
    # App Service authentication ("Easy Auth"): the principal, and every provider's tokens.
    b"x-ms-client-principal",
    b"x-ms-token-",
    b"x-zumo-",
    # App Service's client certificate, when TLS mutual auth is on.
    b"x-arr-clientcert",
)
"""Whole families never forwarded, by name prefix: a new identity provider adds names, not a release."""

_REPLACED_UP = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})
_ORIGINAL_URL = frozenset(
    {
        b"x-original-url",  # App Service's front end
        b"x-waws-unencoded-url",  # App Service's front end
        b"x-original-uri",  # nginx ingress
        b"x-forwarded-uri",  # Traefik
        b"x-rewrite-url",  # IIS URL Rewrite
    }
)
"""The gateway's own request URL as a proxy in front echoes it, query included: it would carry
a credential parameter past the step that strips it, and names nothing the backend serves."""
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
    return _HOP_BY_HOP | _REPLACED_UP | _ORIGINAL_URL | _CHECKED_HERE | dropped


def _is_dropped_alias(name: bytes, drop: frozenset[bytes]) -> bool:
    """`X_Tenant` is `X-Tenant` to every CGI-style backend (WSGI, PHP, wsgiref's
    HTTP_X_TENANT): an underscore spelling of a name never forwarded is not forwarded either."""
    alias = name.replace(b"_", b"-")
    return alias in drop or alias.startswith(INBOUND_CREDENTIAL_PREFIXES)


def upstream_headers(
    inbound: RawHeaders,
    *,
    client_ip: str,
    scheme: str,
    host: str = "",
    dropped: frozenset[bytes] = INBOUND_CREDENTIAL_HEADERS,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> list[tuple[bytes, bytes]]:
    """Headers for the backend request.

    `scheme` and `host` are the request's public origin as the Host guard worked it out
    (never the caller's own X-Forwarded-* values); `dropped` holds lower-case names never
    forwarded, `extra` the server's configured headers (lower-case names, encoded).
    """
    drop = _dropped_up(dropped)
    out: list[tuple[bytes, bytes]] = []
    forwarded_for = b""
    has_traceparent = False
    has_accept_encoding = False
    has_connection = False
    for name, value in inbound:
        lower = name.lower()
        if lower == b"x-forwarded-for":
            forwarded_for = value
        if lower in drop:
            has_connection = has_connection or lower == b"connection"
            continue
        if lower.startswith(INBOUND_CREDENTIAL_PREFIXES):
            continue
        if b"_" in lower and _is_dropped_alias(lower, drop):
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
    out.append((b"x-forwarded-proto", scheme.encode()))
    if host:
        out.append((b"x-forwarded-host", host.encode()))
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


SINGLE_HEADERS = frozenset({b"host", b"authorization", b"origin", b"ocp-apim-subscription-key"})
"""Headers a request may carry once at most; servers' credential header names add to these."""


def header_map(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name, built once per request.

    The one accessor every stage reads headers through. Starlette's Headers scans
    the whole list on every lookup (and keeps the first copy, where a dict keeps
    the last); the pipeline looks up half a dozen names, so one dict is cheaper,
    and `refuse_repeated` makes first and last the same for every name that matters.
    ASGI servers send names lower-case.
    """
    cached = scope.get("mcp_gateway.headers")
    if cached is None:
        if not isinstance(scope["headers"], (list, tuple)):
            scope["headers"] = list(scope["headers"])  # an iterable can be read only once
        cached = scope["mcp_gateway.headers"] = dict(scope["headers"])
    return cached


def get_header(scope: Scope, name: bytes) -> str | None:
    value = header_map(scope).get(name)
    return value.decode("latin-1") if value is not None else None


def refuse_repeated(scope: Scope, names: frozenset[bytes]) -> None:
    """BadRequest when a header in `names` is sent more than once.

    Two copies of Host or Authorization are two answers to one question; readers
    that picked different copies let an unchecked value through. The common case
    (no name repeated at all) costs one length comparison.
    """
    raw = scope["headers"]
    if len(header_map(scope)) == len(raw):
        return
    seen: set[bytes] = set()
    for name, _ in raw:
        if name in names:
            if name in seen:
                raise BadRequest(f"the {name.decode('latin-1')} header is sent more than once")
            seen.add(name)


def refuse_upgrade_with_body(scope: Scope) -> None:
    """BadRequest, closing the connection, for a request that asks for a protocol upgrade
    and declares a body.

    The gateway upgrades nothing. uvicorn's httptools parser skips the body of such a
    request and reads the bytes that follow it as the next request, while a proxy in
    front took them for the body: a request smuggled past the proxy and answered onto a
    connection it may hand to another caller. Without a body (curl's h2c GETs) the
    request is served as plain HTTP/1.1.
    """
    headers = header_map(scope)
    if b"upgrade" not in headers or not _asks_for_upgrade(scope["headers"]):
        return
    length = headers.get(b"content-length")
    if b"transfer-encoding" in headers or (length is not None and length.strip(b"0 \t")):
        raise BadRequest(
            "a request that asks for a protocol upgrade cannot carry a body", headers={"connection": "close"}
        )


def _asks_for_upgrade(headers: RawHeaders) -> bool:
    """Whether any Connection header lists `upgrade` (with an Upgrade header, what the parser acts on)."""
    return any(
        name == b"connection" and any(token.strip().lower() == b"upgrade" for token in value.split(b","))
        for name, value in headers
    )


def refuse_repeated_params(scope: Scope, names: frozenset[str]) -> None:
    """BadRequest when a credential query parameter (in any spelling) is sent more than once."""
    query: bytes = scope.get("query_string", b"")
    if not query or not names:
        return
    seen: set[str] = set()
    for part in _params(query):
        name = _param_name(part)
        if name in names:
            if name in seen:
                raise BadRequest(f"the {name} query parameter is sent more than once")
            seen.add(name)


_SEPARATORS = re.compile(rb"([&;])")


def _params(query: bytes) -> list[bytes]:
    """`name=value` parts, split at `&` and at `;`, which some backends (Perl's CGI, older
    Rack) still take as a separator: a parameter cloaked behind `;` must not pass as part
    of another's value when the backend would read it as one of its own."""
    return query.split(b"&") if b";" not in query else _SEPARATORS.split(query)[::2]


def _decoded(text: str) -> str:
    """One query name or value, decoded as form data is (`+` is a space, UTF-8 escapes)."""
    return unquote_plus(text, encoding="utf-8", errors="replace") if "%" in text or "+" in text else text


def _param_name(part: bytes) -> str:
    """The name of one `name=value` part, decoded and lower-cased: the only way names are compared."""
    return _decoded(part.split(b"=", 1)[0].decode("latin-1")).lower()


def query_names(query: bytes | str) -> frozenset[str]:
    """Every parameter name in a query string, as `_param_name` sees it."""
    raw = query.encode("latin-1") if isinstance(query, str) else query
    return frozenset(_param_name(part) for part in _params(raw) if part)


def query_values(scope: Scope, name: str) -> list[str]:
    """Every value of one query parameter (name compared decoded and case-insensitively).

    Auth reads credentials only through this, and `strip_query_params` removes by the
    same names, so whatever authenticates a caller never travels on.
    """
    query: bytes = scope.get("query_string", b"")
    if not query:
        return []
    wanted = name.lower()
    values = []
    for part in _params(query):
        if part and _param_name(part) == wanted:
            _, _, value = part.partition(b"=")
            values.append(_decoded(value.decode("latin-1")))
    return values


def strip_query_params(query: bytes, names: frozenset[str]) -> bytes:
    """The query string without the parameters named in `names` (lower-case, decoded)."""
    if not query or not names:
        return query
    if b";" not in query:
        return b"&".join(part for part in query.split(b"&") if _param_name(part) not in names)
    # Keep each separator that was before a kept parameter, so what passes is what came.
    pieces = _SEPARATORS.split(query)
    kept: list[bytes] = []
    for i in range(0, len(pieces), 2):
        if _param_name(pieces[i]) in names:
            continue
        if kept:
            kept.append(pieces[i - 1])
        kept.append(pieces[i])
    return b"".join(kept)
