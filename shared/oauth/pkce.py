"""PKCE (RFC 7636), S256 only: the gateway requires it of its clients and uses it with Entra.

Shared by the sign-in facade and any later OAuth client code of the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")
"""A base64url SHA-256 without padding is exactly 43 characters."""


def new_verifier() -> str:
    return secrets.token_urlsafe(64)  # 86 characters of the unreserved set


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def is_challenge(value: str) -> bool:
    return bool(_CHALLENGE.match(value))


def verifies(verifier: str, challenge: str) -> bool:
    """Whether `verifier` is well-formed and hashes to `challenge` (compared in constant time)."""
    if not isinstance(verifier, str) or not _VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
