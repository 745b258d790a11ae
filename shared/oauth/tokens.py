"""The gateway's own access tokens (ES256 JWTs, RFC 9068) and refresh tokens (sealed).

An access token names exactly one server: `iss` is that server's issuer and `aud` its
resource URL, so every other server refuses it. For a server whose outbound mode is
on-behalf-of it carries the user's Entra access token, sealed (`ent`): the assertion
the exchange needs, readable only by the gateway.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import jwt

from ..caller import Caller
from ..inbound.tokens import TokenRejected
from .keys import SignInKeys

TOKEN_TYPE = "at+jwt"
ALGORITHM = "ES256"
_ENTRA_TOKEN_PURPOSE = "entra access token"
_MAX_TOKEN_CHARS = 16 * 1024
_FORBIDDEN_HEADER_PARAMS = ("jku", "jwk", "x5u", "x5c", "crit")
_VERIFIED_CACHE = 10_000
CLOCK_SKEW_SECONDS = 30


@dataclass(frozen=True)
class SignedInUser:
    """Who signed in, as the Entra token at sign-in said, and what the gateway grants."""

    object_id: str
    tenant_id: str | None
    name: str | None
    username: str | None
    roles: tuple[str, ...]
    scope: str


class AccessTokens:
    def __init__(self, keys: SignInKeys, *, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.clock = clock
        self._public = keys.signing_key.public_key()
        self._verified: OrderedDict[bytes, Caller] = OrderedDict()

    def issue(
        self,
        *,
        issuer: str,
        audience: str,
        client_id: str,
        user: SignedInUser,
        lifetime: int,
        entra_token: str | None = None,
        entra_expires_at: float | None = None,
    ) -> tuple[str, int]:
        """(token, expires_in). Carrying an Entra token, it lives no longer than that token."""
        now = int(self.clock())
        expires = now + lifetime
        if entra_token is not None and entra_expires_at is not None:
            expires = min(expires, int(entra_expires_at))
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": user.object_id,
            "oid": user.object_id,
            "client_id": client_id,
            "scope": user.scope,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(16),
        }
        for name, value in (("tid", user.tenant_id), ("name", user.name), ("preferred_username", user.username)):
            if value:
                claims[name] = value
        if user.roles:
            claims["roles"] = list(user.roles)
        if entra_token is not None:
            claims["ent"] = self.keys.seal(_ENTRA_TOKEN_PURPOSE, entra_token.encode())
        token = jwt.encode(claims, self.keys.signing_key, algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE, "kid": self.keys.kid})
        return token, max(0, expires - now)

    def is_ours(self, header: dict[str, Any]) -> bool:
        """Whether a token's (unverified) header says it is the gateway's: its algorithm and key id."""
        return header.get("alg") == ALGORITHM and header.get("kid") == self.keys.kid

    def verify(self, token: str, *, issuer: str, audience: str) -> Caller:
        """The caller this token stands for; TokenRejected (401) when any check fails."""
        digest = hashlib.sha256(f"{issuer}\0{audience}\0{token}".encode()).digest()
        cached = self._verified.get(digest)
        now = self.clock()
        if cached is not None and cached.token_expires_at is not None and cached.token_expires_at + CLOCK_SKEW_SECONDS > now:
            return cached
        caller = self._verify(token, issuer, audience)
        self._verified[digest] = caller
        if len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return caller

    def _verify(self, token: str, issuer: str, audience: str) -> Caller:
        if len(token) > _MAX_TOKEN_CHARS:
            raise TokenRejected("token is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("token header is malformed") from None
        if header.get("typ") != TOKEN_TYPE or any(p in header for p in _FORBIDDEN_HEADER_PARAMS):
            raise TokenRejected("token header is not the gateway's")
        try:
            claims = jwt.decode(
                token,
                key=self._public,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "client_id"], "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("token audience is not accepted: it was issued for another server") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("token issuer is not accepted: it was issued for another server") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("token signature is invalid") from None
        except jwt.PyJWTError:
            raise TokenRejected("token is malformed") from None
        if not isinstance(claims.get("aud"), str) or not isinstance(claims.get("scope", ""), str):
            raise TokenRejected("token is malformed")
        entra_token = None
        if "ent" in claims:
            opened = self.keys.unseal(_ENTRA_TOKEN_PURPOSE, claims["ent"])
            if opened is None:
                raise TokenRejected("token is malformed")
            entra_token = opened.decode()
        scope = claims.get("scope", "")
        roles = claims.get("roles", [])
        return Caller(
            subject=str(claims["sub"]),
            object_id=claims.get("oid"),
            app_id=str(claims["client_id"]),
            tenant_id=claims.get("tid"),
            issuer=issuer,
            roles=frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset(),
            scopes=frozenset(scope.split()),
            # `scp` marks a delegated token for the permission rule (inbound.tokens.check_permissions)
            claims={**{k: v for k, v in claims.items() if k != "ent"}, "scp": scope},
            token=entra_token,
            token_expires_at=float(claims["exp"]),
        )
