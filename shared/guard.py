"""Transport guard: Host and Origin checks against DNS rebinding.

The backend only ever sees the gateway, so its own rebinding protection is blind:
the gateway must check what the browser sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

from .config import GatewaySettings
from .errors import HostNotAllowed, OriginNotAllowed
from .settings import env

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
_ACCEPTED_MEMORY = 256


def _split_host(host: str) -> tuple[str, str]:
    """('name', 'port') of a Host header value; IPv6 names keep their brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1], host[end + 2 :] if end >= 0 else ""
    name, _, port = host.partition(":")
    return name, port


def _host_matches(pattern: str, name: str, port: str) -> bool:
    pattern = pattern.lower()
    if pattern == "*":
        return True
    p_name, p_port = _split_host(pattern)
    if p_port and p_port != port:
        return False
    if p_name.startswith("*."):
        return name.endswith(p_name[1:])
    return p_name == name


@dataclass(frozen=True)
class HostGuard:
    allowed_hosts: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    _accepted: set[str] = field(default_factory=set, compare=False, repr=False)
    """Host values already accepted: real traffic uses a handful, so the check is one lookup."""

    @classmethod
    def from_settings(cls, settings: GatewaySettings, environ: Mapping[str, str] | None = None) -> "HostGuard":
        hosts = [*_LOOPBACK_NAMES, *settings.allowed_hosts]
        website = env("WEBSITE_HOSTNAME", environ)
        if website:
            hosts.append(website)
        origins = [*settings.allowed_origins, *(settings.cors.allow_origins if settings.cors else ())]
        return cls(tuple(hosts), tuple(o.rstrip("/").lower() for o in origins))

    def check_host(self, host: str | None) -> None:
        if host in self._accepted:
            return
        if not host:
            raise HostNotAllowed("missing Host header")
        name, port = _split_host(host)
        if not any(_host_matches(p, name, port) for p in self.allowed_hosts):
            raise HostNotAllowed(f"host {name!r} is not served by this gateway")
        if len(self._accepted) < _ACCEPTED_MEMORY:
            self._accepted.add(host)

    def check_origin(self, origin: str | None) -> None:
        """No Origin means no browser: nothing to check."""
        if origin is None:
            return
        origin = origin.rstrip("/").lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.hostname:
            name, port = _split_host(parts.netloc)
            if any(_host_matches(p, name, port) for p in self.allowed_hosts if p != "*"):
                return
        raise OriginNotAllowed(f"origin {origin!r} is not allowed")
