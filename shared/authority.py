"""Host, Origin and host-pattern values, parsed strictly.

A Host header is an RFC 3986 authority without userinfo: a DNS-style name, a dotted
IPv4 address or a bracketed IPv6 address, and an optional numeric port. Anything
else (`127.0.0.1:@evil.example`, `evil.example#.apps.contoso.com`, percent-escapes,
a zone id) is refused, and every URL the gateway builds from a request is rebuilt
from the parsed parts, never copied from the header.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import NamedTuple

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
_MAX_NAME = 253
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
ORIGIN_KEY = "mcp_gateway.origin"
"""Where the Host guard leaves the request's PublicOrigin in the ASGI scope."""


class MalformedAuthority(ValueError):
    """The value is not a host[:port] the gateway accepts."""


@dataclass(frozen=True)
class Authority:
    """A parsed host and port; `host` is lower-case, IPv6 in brackets."""

    host: str
    port: int | None = None
    text: str = field(default="", compare=False)
    """host[:port], as it goes into URLs."""

    def __post_init__(self) -> None:
        if not self.text:
            object.__setattr__(self, "text", self.host if self.port is None else f"{self.host}:{self.port}")

    @property
    def is_loopback(self) -> bool:
        ipv4 = self.host.replace(".", "").isdigit()
        return self.host in LOOPBACK_NAMES or (ipv4 and self.host.startswith("127."))


def _host(value: str) -> str:
    if value.startswith("["):
        if not value.endswith("]") or "%" in value:
            raise MalformedAuthority("not a bracketed IPv6 address")
        try:
            return f"[{ipaddress.IPv6Address(value[1:-1]).compressed}]"
        except ValueError:
            raise MalformedAuthority("not a bracketed IPv6 address") from None
    name = value[:-1] if value.endswith(".") else value  # a fully qualified name's root dot
    if not name or len(name) > _MAX_NAME:
        raise MalformedAuthority("empty or too long")
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise MalformedAuthority("not a host name")
    if labels[-1].isdigit():
        # A name ending in a number is an IPv4 address to browsers and resolvers: only the dotted form.
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise MalformedAuthority("not a dotted IPv4 address") from None
    return name


def _split(value: str) -> tuple[str, str | None]:
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise MalformedAuthority("unclosed IPv6 bracket")
        rest = value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise MalformedAuthority("text after the IPv6 address")
        return value[: end + 1], rest[1:] if rest else None
    host, colon, port = value.partition(":")
    return host, port if colon else None


def parse_authority(value: str) -> Authority:
    """host[:port] -> Authority; MalformedAuthority for anything else."""
    if not value or len(value) > _MAX_NAME + 8 or not value.isascii():
        raise MalformedAuthority("empty, too long or not ASCII")
    host, port = _split(value.lower())
    if port is None:
        return Authority(_host(host))
    if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        raise MalformedAuthority("the port is not a number from 1 to 65535")
    return Authority(_host(host), int(port))


def parse_origin(value: str) -> tuple[str, Authority]:
    """A browser Origin (`scheme://host[:port]`) -> (scheme, authority); http(s) only."""
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise MalformedAuthority("not an http(s) origin")
    return scheme, parse_authority(rest[:-1] if rest.endswith("/") else rest)


@dataclass(frozen=True)
class HostPattern:
    """One `gateway.allowedHosts` entry: a host, or `*.suffix` (one or more labels), with an optional port."""

    host: str
    wildcard: bool = False
    port: int | None = None

    @classmethod
    def parse(cls, value: str) -> "HostPattern":
        if value.startswith("*."):
            suffix = parse_authority(value[2:])
            if suffix.host.startswith("["):
                raise MalformedAuthority("a wildcard needs a host name")
            return cls(suffix.host, True, suffix.port)
        parsed = parse_authority(value)
        return cls(parsed.host, False, parsed.port)

    def matches(self, authority: Authority) -> bool:
        if self.port is not None and self.port != authority.port:
            return False
        if not self.wildcard:
            return authority.host == self.host
        # Label by label: `*.apps.contoso.com` takes `a.apps.contoso.com`, not `xapps.contoso.com`.
        return authority.host.endswith("." + self.host) and not authority.host.startswith("[")


class PublicOrigin(NamedTuple):
    """How the client reached the gateway: the scheme and authority its URLs must name.

    A NamedTuple: one is made per request, and a frozen dataclass costs several times more.
    """

    scheme: str
    authority: Authority

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.authority.text}"
