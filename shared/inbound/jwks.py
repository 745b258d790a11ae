"""Signing keys of one OpenID Connect issuer, fetched without blocking the event loop.

Keys are refreshed hourly; a token with an unknown `kid` triggers at most one refetch
per cooldown (so a flood of made-up kids cannot make the gateway hammer the IdP);
and cached keys keep serving while the IdP is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import jwt

logger = logging.getLogger("shared.inbound.jwks")

REFRESH_SECONDS = 3600.0
UNKNOWN_KID_COOLDOWN_SECONDS = 300.0
RETRY_AFTER_FAILURE_SECONDS = 30.0
_SIGNING_KEY_TYPES = {"RSA", "EC"}


class JwksUnavailable(Exception):
    """No keys could be fetched and none are cached."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: jwt.PyJWK
    algorithms: frozenset[str]


def _algorithms_for(jwk: dict[str, Any]) -> frozenset[str]:
    """What a key may verify: its declared `alg`, else what its type allows."""
    declared = jwk.get("alg")
    if jwk.get("kty") == "RSA":
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        allowed = {"ES256"}
    else:
        return frozenset()
    if declared is not None:
        return frozenset({declared}) & allowed
    return frozenset(allowed)


class JwksCache:
    def __init__(
        self,
        openid_config_url: str,
        client: Callable[[], httpx.AsyncClient],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        unknown_kid_cooldown: float = UNKNOWN_KID_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.openid_config_url = openid_config_url
        self._client = client
        self._refresh_seconds = refresh_seconds
        self._cooldown = unknown_kid_cooldown
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._issuer: str | None = None
        self._fetched_at: float | None = None
        self._next_attempt = 0.0
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()

    @property
    def issuer(self) -> str | None:
        """The issuer named by the OpenID configuration (known after the first fetch)."""
        return self._issuer

    async def key(self, kid: str) -> SigningKey | None:
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._refresh_seconds:
            await self._refresh(reason="scheduled", now=now)
        found = self._keys.get(kid)
        if found is None and self._last_attempt is not None and now - self._last_attempt >= self._cooldown:
            # A rotated key shows up as an unknown kid; made-up kids must not turn
            # into a stream of fetches, so at most one per cooldown.
            await self._refresh(reason="unknown kid", now=now, force=True)
            found = self._keys.get(kid)
        if found is None and not self._keys:
            raise JwksUnavailable(f"no signing keys could be fetched from {self.openid_config_url}")
        return found

    async def _refresh(self, *, reason: str, now: float, force: bool = False) -> None:
        fetched_before = self._fetched_at
        async with self._lock:
            if self._fetched_at != fetched_before:
                return  # another request refreshed while this one waited
            if not force and self._fetched_at is not None and now < self._next_attempt:
                return
            if self._fetched_at is None and now < self._next_attempt:
                return
            if force and self._last_attempt is not None and now - self._last_attempt < self._cooldown:
                return
            self._last_attempt = now
            try:
                await self._fetch()
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                self._next_attempt = now + RETRY_AFTER_FAILURE_SECONDS
                logger.warning(
                    "could not refresh signing keys from %s (%s: %s); %s",
                    self.openid_config_url,
                    reason,
                    type(exc).__name__,
                    "keeping the cached keys" if self._keys else "no keys cached",
                )

    async def _fetch(self) -> None:
        client = self._client()
        response = await client.get(self.openid_config_url)
        response.raise_for_status()
        configuration = response.json()
        jwks_response = await client.get(configuration["jwks_uri"])
        jwks_response.raise_for_status()
        keys: dict[str, SigningKey] = {}
        for jwk in jwks_response.json().get("keys", []):
            if not isinstance(jwk, dict) or jwk.get("kty") not in _SIGNING_KEY_TYPES:
                continue
            if jwk.get("use", "sig") != "sig" or not isinstance(jwk.get("kid"), str):
                continue
            algorithms = _algorithms_for(jwk)
            if not algorithms:
                continue
            try:
                parsed = jwt.PyJWK(jwk, algorithm=sorted(algorithms)[0])
            except jwt.PyJWTError:
                continue
            keys[jwk["kid"]] = SigningKey(jwk["kid"], parsed, algorithms)
        self._keys = keys
        self._issuer = configuration.get("issuer")
        self._fetched_at = self._clock()
        self._next_attempt = self._fetched_at
