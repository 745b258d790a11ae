"""The sign-in keys, every one derived from MCP_GATEWAY_SIGNING_KEY, so all instances hold them.

HKDF-SHA256 with a label per purpose, so that no key serves two uses:

- a P-256 key that signs the gateway's access tokens (ES256), published as a JWK;
- an AES-256-GCM key that seals what the gateway hands out and takes back (the consent
  form, Entra's `state`, refresh tokens, the Entra token inside an access token,
  authorization-code records); the purpose of each sealed value is its associated
  data, so a value sealed for one use never opens as another;
- an HMAC key that signs dynamic client registrations (readable, not secret).

Rotating the setting replaces all three: every token and half-finished sign-in is then
refused, and users sign in again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError
from ..settings import env
from ..signing import Signer

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_NONCE_BYTES = 12
MAX_SEALED_CHARS = 16 * 1024


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(secret: bytes, label: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=f"mcp-gateway {label}".encode()).derive(secret)


def _b64_uint(value: int) -> str:
    return b64url(value.to_bytes(32, "big"))


@dataclass(frozen=True)
class SignInKeys:
    signing_key: ec.EllipticCurvePrivateKey
    kid: str
    _seal_key: bytes
    _mac_key: bytes

    @classmethod
    def derive(cls, secret: bytes) -> "SignInKeys":
        scalar = int.from_bytes(_derive(secret, "sign-in access token signing key v1", 48), "big") % (_P256_ORDER - 1) + 1
        signing_key = ec.derive_private_key(scalar, ec.SECP256R1())
        numbers = signing_key.public_key().public_numbers()
        # RFC 7638 thumbprint: the required members, sorted, no whitespace
        canonical = json.dumps(
            {"crv": "P-256", "kty": "EC", "x": _b64_uint(numbers.x), "y": _b64_uint(numbers.y)},
            separators=(",", ":"),
            sort_keys=True,
        )
        kid = b64url(hashlib.sha256(canonical.encode()).digest())
        return cls(signing_key, kid, _derive(secret, "sign-in sealing key v1"), _derive(secret, "sign-in registration key v1"))

    @classmethod
    def from_settings(cls, environ: Mapping[str, str] | None = None) -> "SignInKeys":
        """Sign-in refuses a per-process key: every instance must accept what any one issued."""
        Signer.from_settings(environ)  # the setting's own checks (length, unresolved Key Vault reference)
        configured = env("MCP_GATEWAY_SIGNING_KEY", environ)
        if configured is None:
            raise ConfigError(
                "MCP_GATEWAY_SIGNING_KEY",
                "is not set: sign-in (auth.entra.signIn) needs the key every instance shares, "
                "to sign tokens and seal sign-in state (see infra/README.md, The signing key)",
            )
        return cls.derive(configured.encode())

    def public_jwk(self) -> dict[str, str]:
        numbers = self.signing_key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _b64_uint(numbers.x), "y": _b64_uint(numbers.y),
                "use": "sig", "alg": "ES256", "kid": self.kid}

    # -- sealing ------------------------------------------------------------------------

    def seal(self, purpose: str, plaintext: bytes) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        return b64url(nonce + AESGCM(self._seal_key).encrypt(nonce, plaintext, purpose.encode()))

    def unseal(self, purpose: str, sealed: str) -> bytes | None:
        """The plaintext, or None for anything not sealed by this key for `purpose`."""
        if not isinstance(sealed, str) or len(sealed) > MAX_SEALED_CHARS:
            return None
        try:
            raw = unb64url(sealed)
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _NONCE_BYTES + 16:
            return None
        try:
            return AESGCM(self._seal_key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode())
        except InvalidTag:
            return None

    def seal_json(self, purpose: str, value: Mapping[str, Any], ttl: float) -> str:
        """`value` sealed with an expiry (`exp`, epoch seconds)."""
        document = {**value, "exp": int(time.time() + ttl)}
        return self.seal(purpose, json.dumps(document, separators=(",", ":")).encode())

    def unseal_json(self, purpose: str, sealed: str, *, now: float | None = None) -> dict[str, Any] | None:
        """The sealed object, or None when it is not ours, not for `purpose`, or expired."""
        plaintext = self.unseal(purpose, sealed)
        if plaintext is None:
            return None
        document = json.loads(plaintext)
        if not isinstance(document, dict) or not isinstance(document.get("exp"), int):
            return None
        if document["exp"] <= (time.time() if now is None else now):
            return None
        return document

    # -- signed, readable values ----------------------------------------------------------

    def sign(self, purpose: str, value: bytes) -> str:
        return f"{b64url(value)}.{b64url(self._mac(purpose, value))}"

    def verify(self, purpose: str, signed: str) -> bytes | None:
        encoded, dot, mac = signed.partition(".")
        if not dot or len(signed) > MAX_SEALED_CHARS:
            return None
        try:
            value, presented = unb64url(encoded), unb64url(mac)
        except (binascii.Error, ValueError):
            return None
        return value if hmac.compare_digest(presented, self._mac(purpose, value)) else None

    def _mac(self, purpose: str, value: bytes) -> bytes:
        return hmac.new(self._mac_key, purpose.encode() + b"\0" + value, hashlib.sha256).digest()
