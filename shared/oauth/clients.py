"""Who the client is: a client metadata document (CIMD) or a dynamic registration (RFC 7591).

Both give the same `Client`: its id, a name to show on the consent page, and the
redirect URIs it may use. A dynamic registration is kept by nobody: the client id is
the registration itself, signed for one server, so any instance can read it and no
one can alter it. Its name is the client's own claim, and the consent page says so.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from ..errors import OAuthError
from .keys import SignInKeys

MAX_REDIRECT_URIS = 10
MAX_URI_CHARS = 2000
MAX_NAME_CHARS = 200
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
_DCR_PREFIX = "dcr."
# Characters a redirect URI may hold: RFC 3986's, less those that would break the
# Content-Security-Policy it is written into (`;`, `,`, quotes, spaces).
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&()*+=%]+$")
# `host[:port]` and nothing else: what follows an IPv6 literal's bracket must be a port.
_NETLOC = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\[\]:@]*)(?::[0-9]*)?$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str | None
    redirect_uris: tuple[str, ...]
    kind: Literal["metadata", "registered"]

    @property
    def vouching_host(self) -> str | None:
        """For a metadata document: the host that serves it, the one identity that is checked."""
        return urlsplit(self.client_id).hostname if self.kind == "metadata" else None


def clean_name(value: Any) -> str | None:
    """A display name: text without controls or direction overrides, bounded."""
    if not isinstance(value, str):
        return None
    name = _CONTROL.sub("", value).strip()
    return name[:MAX_NAME_CHARS] or None


def check_redirect_uri(uri: Any, field: str = "redirect_uris") -> str:
    """An acceptable redirect URI: https, http on a loopback host (RFC 8252 7.3), or a
    private-use scheme in reverse-domain form (RFC 8252 7.1). No fragment, no user info."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_CHARS or not _URI_CHARS.match(uri):
        raise OAuthError("invalid_redirect_uri", f"{field}: not an acceptable URI")
    parts = urlsplit(uri)
    scheme = parts.scheme
    if not _SCHEME.match(scheme) or parts.fragment or "#" in uri or parts.username or parts.password or "@" in parts.netloc:
        raise OAuthError("invalid_redirect_uri", f"{field}: a redirect URI has a scheme, and no fragment or user info")
    if scheme == "https":
        if not parts.hostname:
            raise OAuthError("invalid_redirect_uri", f"{field}: an https redirect URI needs a host")
    elif scheme == "http":
        if _host(parts.netloc) not in LOOPBACK_HOSTS:
            raise OAuthError("invalid_redirect_uri", f"{field}: http is only for loopback redirects (127.0.0.1, [::1], localhost)")
    elif "." not in scheme:
        raise OAuthError("invalid_redirect_uri", f"{field}: a private-use scheme must be a reverse domain name (RFC 8252)")
    return uri


def _host(netloc: str) -> str | None:
    """The host of `host[:port]`, IPv6 kept in brackets, lower case; None for anything else
    (user info, or text after the host that is not a port)."""
    match = _NETLOC.match(netloc)
    return match.group(1).lower() if match else None


def _without_port(uri: str) -> tuple[str, str | None, str, str]:
    parts = urlsplit(uri)
    return parts.scheme, _host(parts.netloc), parts.path, parts.query


def redirect_allowed(client: Client, presented: str) -> bool:
    """Exact match, or a loopback redirect registered without regard to its port (RFC 8252 7.3)."""
    if presented in client.redirect_uris:
        return True
    if len(presented) > MAX_URI_CHARS or not _URI_CHARS.match(presented):
        return False
    parts = urlsplit(presented)
    if parts.scheme != "http" or _host(parts.netloc) not in LOOPBACK_HOSTS or parts.fragment or "#" in presented:
        return False
    try:
        port = parts.port
    except ValueError:
        return False
    if port is None and parts.netloc.endswith(":"):
        return False
    wanted = _without_port(presented)
    return any(urlsplit(r).scheme == "http" and _without_port(r) == wanted for r in client.redirect_uris)


def redirect_host(uri: str) -> str:
    """What the consent page names as the place the user is sent back to."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return parts.netloc
    return f"{parts.scheme}:"


def parse_client_metadata(document: Any, *, client_id: str | None, kind: Literal["metadata", "registered"]) -> Client:
    """The fields the gateway uses, checked; anything it does not support is refused."""
    if not isinstance(document, dict):
        raise OAuthError("invalid_client_metadata", "client metadata must be a JSON object")
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not uris or len(uris) > MAX_REDIRECT_URIS:
        raise OAuthError("invalid_redirect_uri", f"redirect_uris: give 1 to {MAX_REDIRECT_URIS} redirect URIs")
    redirect_uris = tuple(check_redirect_uri(u) for u in uris)
    method = document.get("token_endpoint_auth_method", "none")
    if kind == "metadata" and method != "none":
        raise OAuthError("invalid_client_metadata", "token_endpoint_auth_method: only public clients ('none') are supported")
    if kind == "metadata" and ("client_secret" in document or "client_secret_expires_at" in document):
        raise OAuthError("invalid_client_metadata", "a client metadata document must not hold a client secret")
    # grant_types and response_types are answered with what the gateway supports (RFC 7591 3.2.1).
    return Client(client_id or "", clean_name(document.get("client_name")), redirect_uris, kind)


class Registrations:
    """Dynamic client registration without a registry: the signed registration is the id."""

    def __init__(self, keys: SignInKeys) -> None:
        self.keys = keys

    def register(self, server: str, document: Any) -> tuple[Client, dict[str, Any]]:
        client = parse_client_metadata(document, client_id=None, kind="registered")
        issued = int(time.time())
        record = {"s": server, "n": client.name, "r": list(client.redirect_uris), "t": issued}
        client_id = _DCR_PREFIX + self.keys.sign(f"dcr {server}", json.dumps(record, separators=(",", ":")).encode())
        answer: dict[str, Any] = {
            "client_id": client_id,
            "client_id_issued_at": issued,
            "redirect_uris": list(client.redirect_uris),
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
        if client.name:
            answer["client_name"] = client.name
        return Client(client_id, client.name, client.redirect_uris, "registered"), answer

    def client(self, server: str, client_id: str) -> Client | None:
        """The registration behind `client_id`, if this gateway signed it for `server`."""
        if not client_id.startswith(_DCR_PREFIX):
            return None
        value = self.keys.verify(f"dcr {server}", client_id[len(_DCR_PREFIX) :])
        if value is None:
            return None
        record = json.loads(value)
        return Client(client_id, record.get("n"), tuple(record["r"]), "registered")


def is_metadata_url(client_id: str) -> bool:
    return client_id.startswith("https://")


def metadata_url_problem(url: str) -> str | None:
    """Why `url` cannot be a client metadata document's URL (None when it can)."""
    if len(url) > MAX_URI_CHARS or not _URI_CHARS.match(url):
        return "the client_id URL is too long or holds characters a URL cannot"
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return "a client_id URL must be https with a host"
    if parts.username or parts.password or parts.fragment or "#" in url:
        return "a client_id URL must not hold user info or a fragment"
    if parts.path in ("", "/") or any(seg in (".", "..") for seg in parts.path.split("/")):
        return "a client_id URL needs a path, without '.' or '..' segments"
    try:
        parts.port
    except ValueError:
        return "the client_id URL has an invalid port"
    return None
