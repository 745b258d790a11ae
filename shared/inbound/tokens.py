"""Bearer token validation: Entra ID (validate-azure-ad-token) and any OIDC issuer (validate-jwt).

A flat list of named checks. The algorithm is never taken from the token alone: it
must be one of the asymmetric algorithms below AND one the signing key allows.
Messages say what was wrong, never what the token said. What a valid token may do
is permissions.py's question.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable

import jwt

from ..config.inbound import ClaimRequirement, EntraAuth, JwtAuth, TokenRules
from ..errors import AuthUnavailable, TokenRejected
from ..caller import Caller
from .jwks import RETRY_AFTER_FAILURE_SECONDS, JwksCache, JwksUnavailable

ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256"})
ENTRA_ALGORITHMS = frozenset({"RS256"})
"""Entra ID signs access tokens with RS256 only; its published keys name no `alg`."""
MAX_TOKEN_BYTES = 16 * 1024
_KID = re.compile(r"^[A-Za-z0-9_\-=.+/]{1,128}$")
_FORBIDDEN_HEADER_PARAMS = ("jku", "jwk", "x5u", "x5c", "crit")
_VALIDATED_CACHE_SIZE = 10_000


def _claim_values(value: Any, separator: str | None) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str) and separator:
        return [v for v in value.split(separator) if v]
    return [] if value is None else [str(value)]


def check_required_claims(claims: dict[str, Any], requirements: Iterable[ClaimRequirement]) -> None:
    for requirement in requirements:
        if requirement.name not in claims:
            raise TokenRejected(f"token is missing required claim '{requirement.name}'")
        if not requirement.values:
            continue
        present = set(_claim_values(claims[requirement.name], requirement.separator))
        wanted = set(requirement.values)
        ok = wanted <= present if requirement.match == "all" else bool(wanted & present)
        if not ok:
            raise TokenRejected(f"token claim '{requirement.name}' does not have an accepted value")


def _unverified_header(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRejected("token is too large")
    segments = token.count(".")
    if segments == 4:
        raise TokenRejected("encrypted tokens (JWE) are not accepted")
    if segments != 2:
        raise TokenRejected("token is not a JWT")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected("token header is malformed") from None
    return header


def _check_header(header: dict[str, Any], algorithms: frozenset[str]) -> tuple[str, str]:
    """(alg, kid) after refusing everything a verifier must not trust from a token.

    Every value is type-checked before it is used: a header is attacker input.
    """
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise TokenRejected("token algorithm is not accepted")
    for param in _FORBIDDEN_HEADER_PARAMS:
        if param in header:
            raise TokenRejected(f"token header parameter '{param}' is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.match(kid) or ".." in kid:
        raise TokenRejected("token has no usable key id")
    return alg, kid


class TokenValidator:
    """Validates tokens for one server's `entra` or `jwt` settings; caches the verdicts."""

    def __init__(
        self,
        settings: EntraAuth | JwtAuth,
        jwks: JwksCache,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.rules: TokenRules = settings.rules
        self.jwks = jwks
        self.algorithms = ENTRA_ALGORITHMS if isinstance(settings, EntraAuth) else ASYMMETRIC_ALGORITHMS
        self._clock = clock
        self._validated: OrderedDict[bytes, Caller] = OrderedDict()

    async def validate(self, token: str) -> Caller:
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._validated.get(digest)
        if cached is not None and cached.token_expires_at is not None and cached.token_expires_at > self._clock():
            return cached
        caller = await self._validate(token)
        self._remember(digest, caller)
        return caller

    def _remember(self, digest: bytes, caller: Caller) -> None:
        if caller.token_expires_at is None:
            return
        self._validated[digest] = caller
        if len(self._validated) > _VALIDATED_CACHE_SIZE:
            self._validated.popitem(last=False)

    async def _validate(self, token: str) -> Caller:
        header = _unverified_header(token)
        alg, kid = _check_header(header, self.algorithms)
        try:
            key = await self.jwks.key(kid)
        except JwksUnavailable:
            # Not the caller's fault: a 503 to retry, not a 401 that sends clients into OAuth again.
            raise AuthUnavailable(
                "the token issuer's signing keys cannot be fetched: try again later",
                headers={"retry-after": str(int(RETRY_AFTER_FAILURE_SECONDS))},
            ) from None
        if key is None:
            raise TokenRejected("token is signed with an unknown key")
        if alg not in key.algorithms:
            raise TokenRejected("token algorithm does not match its signing key")
        claims = self._decode(token, key.key.key, alg)
        if isinstance(self.settings, EntraAuth):
            app_id = self._check_entra(claims)
        else:
            app_id = claims.get("azp") or claims.get("client_id") or claims.get("appid")
        check_required_claims(claims, self.rules.required_claims)
        return Caller(
            subject=str(claims.get("sub")) if claims.get("sub") is not None else None,
            object_id=claims.get("oid"),
            app_id=app_id,
            tenant_id=claims.get("tid"),
            issuer=claims.get("iss"),
            roles=frozenset(_claim_values(claims.get("roles"), None)),
            scopes=frozenset(_claim_values(claims.get("scp"), " ")),
            claims=claims,
            token=token,
            token_expires_at=float(claims["exp"]) if isinstance(claims.get("exp"), (int, float)) else None,
        )

    def _issuers(self) -> list[str]:
        if isinstance(self.settings, EntraAuth):
            return [self.settings.v2_issuer, self.settings.issuer_v1]
        if self.settings.issuers:
            return list(self.settings.issuers)
        return [self.jwks.issuer] if self.jwks.issuer else []

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        require = ["exp", "iss", "aud"]
        if isinstance(self.settings, JwtAuth) and not self.settings.require_expiration_time:
            require.remove("exp")
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=list(self.rules.audiences),
                issuer=self._issuers(),
                leeway=self.rules.clock_skew_seconds,
                options={"require": require, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("token audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("token issuer is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"token is missing required claim '{exc.claim}'") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("token signature is invalid") from None
        except jwt.PyJWTError:
            raise TokenRejected("token is malformed") from None

    def _check_entra(self, claims: dict[str, Any]) -> str | None:
        """Entra specifics: the issuer's form matches the token version, one tenant, allowed apps."""
        settings = self.settings
        assert isinstance(settings, EntraAuth)
        version = claims.get("ver")
        if claims["iss"] == settings.v2_issuer:
            if version != "2.0":
                raise TokenRejected("token issuer does not match its version")
            app_id = claims.get("azp")
        else:
            if version != "1.0" or "azp" in claims:
                raise TokenRejected("token issuer does not match its version")
            app_id = claims.get("appid")
        if claims.get("tid") != settings.tenant_id:
            raise TokenRejected("token tenant is not accepted")
        if settings.client_application_ids and app_id not in settings.client_application_ids:
            raise TokenRejected("calling application is not allowed")
        return app_id
