"""Transport guard: Host and Origin checks against DNS rebinding, and the request's public origin.

The backend only ever sees the gateway, so its own rebinding protection is blind:
the gateway must check what the browser sent. Host values are parsed strictly
(shared.authority) and the scheme and host the gateway names in URLs come from
the parsed parts, by one rule (docs/security.md):

- `gateway.publicBaseUrl`, when set, names the gateway (metadata and challenges);
- X-Forwarded-Proto / X-Forwarded-Host count only with `gateway.trustForwardedHeaders`
  (the last value of each: the one the nearest proxy wrote), and a forwarded host
  must be allowed like a Host;
- on App Service / Functions (WEBSITE_HOSTNAME set) a non-loopback host is reached
  over https: the platform's front end terminates TLS and the worker sees http;
- otherwise the connection's own scheme.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from starlette.types import Scope

from .authority import (
    ORIGIN_KEY,
    Authority,
    HostPattern,
    MalformedAuthority,
    PublicOrigin,
    parse_authority,
    parse_origin,
)
from .config import GatewaySettings
from .errors import BadRequest, HostNotAllowed, OriginNotAllowed
from .headers import get_header
from .settings import env

_LOOPBACK_PATTERNS = ("localhost", "127.0.0.1", "[::1]")
_ACCEPTED_MEMORY = 256


def _last(value: str | None) -> str | None:
    """The last element of a comma-separated forwarded header: what the nearest proxy wrote."""
    if value is None:
        return None
    return value.rsplit(",", 1)[-1].strip() or None


def _patterns(values: list[str]) -> tuple[HostPattern, ...]:
    patterns = []
    for value in values:
        try:
            patterns.append(HostPattern.parse(value))
        except MalformedAuthority:
            continue  # config entries are validated at load; a malformed platform value is ignored
    return tuple(patterns)


@dataclass(frozen=True)
class HostGuard:
    hosts: tuple[HostPattern, ...]
    """Allowed Host values; empty with `any_host`."""
    origins: frozenset[str]
    """Allowed Origins, normalised to scheme://host[:port]."""
    any_host: bool = False
    any_origin: bool = False
    on_app_service: bool = False
    trust_forwarded: bool = False
    _accepted: dict[str, Authority] = field(default_factory=dict, compare=False, repr=False)
    """Host values already accepted: real traffic uses a handful, so the check is one lookup."""

    @classmethod
    def from_settings(cls, settings: GatewaySettings, environ: Mapping[str, str] | None = None) -> "HostGuard":
        website = env("WEBSITE_HOSTNAME", environ)
        hosts = [h for h in settings.allowed_hosts if h != "*"]
        hosts += [*_LOOPBACK_PATTERNS, *([website] if website else [])]
        # CORS answers and the rebinding guard agree on named origins; a CORS "*" never
        # switches the guard off (only gateway.allowedOrigins "*" does).
        cors = [o for o in settings.cors.allow_origins if o != "*"] if settings.cors else []
        origins = [o for o in (*settings.allowed_origins, *cors) if o != "*"]
        return cls(
            hosts=_patterns(hosts),
            origins=frozenset(_normalised_origins(origins)),
            any_host="*" in settings.allowed_hosts,
            any_origin="*" in settings.allowed_origins,
            on_app_service=website is not None,
            trust_forwarded=settings.trust_forwarded_headers,
        )

    def check(self, scope: Scope) -> PublicOrigin:
        """Host (and forwarded host), Origin, and the scheme: the request's public origin, kept in the scope."""
        authority = self.check_host(get_header(scope, b"host"))
        if self.trust_forwarded:
            forwarded = _last(get_header(scope, b"x-forwarded-host"))
            if forwarded is not None:
                authority = self.check_host(forwarded, header="X-Forwarded-Host")
        self.check_origin(get_header(scope, b"origin"))
        origin = scope[ORIGIN_KEY] = PublicOrigin(self._scheme(scope, authority), authority)
        return origin

    def check_host(self, host: str | None, *, header: str = "Host") -> Authority:
        known = self._accepted.get(host) if host is not None else None
        if known is not None:
            return known
        if not host:
            raise BadRequest(f"missing {header} header")
        try:
            authority = parse_authority(host.strip())
        except MalformedAuthority:
            raise BadRequest(f"the {header} header is not a valid host[:port]") from None
        if not self.any_host and not any(p.matches(authority) for p in self.hosts):
            raise HostNotAllowed(
                f"host {authority.host!r} is not served by this gateway: add it to gateway.allowedHosts"
            )
        if len(self._accepted) < _ACCEPTED_MEMORY:
            self._accepted[host] = authority
        return authority

    def check_origin(self, origin: str | None) -> None:
        """No Origin means no browser: nothing to check."""
        if origin is None or self.any_origin:
            return
        try:
            scheme, authority = parse_origin(origin.strip())
        except MalformedAuthority:
            raise OriginNotAllowed("the Origin is not allowed") from None
        if f"{scheme}://{authority.text}" in self.origins or any(p.matches(authority) for p in self.hosts):
            return
        raise OriginNotAllowed(f"origin '{scheme}://{authority.text}' is not allowed")

    def _scheme(self, scope: Scope, authority: Authority) -> str:
        if self.trust_forwarded:
            proto = _last(get_header(scope, b"x-forwarded-proto"))
            if proto is not None:
                proto = proto.lower()
                if proto not in ("http", "https"):
                    raise BadRequest("X-Forwarded-Proto must be http or https")
                return proto
        if self.on_app_service and not authority.is_loopback:
            return "https"
        return "https" if scope.get("scheme") == "https" else "http"


def _normalised_origins(values: list[str]) -> list[str]:
    normalised = []
    for value in values:
        try:
            scheme, authority = parse_origin(value)
        except MalformedAuthority:
            continue  # validated at load
        normalised.append(f"{scheme}://{authority.text}")
    return normalised
