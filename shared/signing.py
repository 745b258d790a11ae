"""Integrity for what the gateway hands a client and later takes back.

One HMAC-SHA256 key per deployment, from the MCP_GATEWAY_SIGNING_KEY setting, so
that every instance accepts what any instance signed (no sticky sessions needed).
Without the setting each process draws a random key: fine for one instance, and
`shared` says so at start-up where it matters. Each use signs under its own
purpose, so a value signed for one use is never accepted by another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Mapping

from .settings import env

_MAC_BYTES = 16
MIN_KEY_CHARS = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, key: bytes, *, shared: bool) -> None:
        self._key = hashlib.sha256(b"mcp-gateway signing key\0" + key).digest()
        self.shared = shared
        """Whether every instance holds this key (it came from the setting)."""

    @classmethod
    def from_settings(cls, environ: Mapping[str, str] | None = None) -> "Signer":
        configured = env("MCP_GATEWAY_SIGNING_KEY", environ)
        if configured is None:
            return cls(secrets.token_bytes(32), shared=False)
        if configured.lstrip().startswith("@Microsoft.KeyVault("):
            # App Service hands an unresolved Key Vault reference over as its own text,
            # which names the vault and secret: guessable, so never a key.
            from .errors import ConfigError

            raise ConfigError(
                "MCP_GATEWAY_SIGNING_KEY",
                "is an unresolved Key Vault reference: the platform could not read the secret "
                "(check that the app's identity may read it, and the vault's network rules)",
            )
        if len(configured) < MIN_KEY_CHARS:
            from .errors import ConfigError

            raise ConfigError("MCP_GATEWAY_SIGNING_KEY", f"is too short: use at least {MIN_KEY_CHARS} random characters")
        return cls(configured.encode(), shared=True)

    def _mac(self, purpose: str, value: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\0" + value, hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(self, purpose: str, value: bytes) -> str:
        """`value` and its MAC, URL-safe: readable by anyone, forgeable by no one."""
        return f"{_b64(value)}.{_b64(self._mac(purpose, value))}"

    def verify(self, purpose: str, token: str) -> bytes | None:
        """The signed value, or None when `token` was not signed by this key for `purpose`."""
        encoded, dot, mac = token.partition(".")
        if not dot or len(token) > 8192:
            return None
        try:
            value, presented = _unb64(encoded), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        return value if hmac.compare_digest(presented, self._mac(purpose, value)) else None
