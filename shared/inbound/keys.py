"""Subscription keys, API-Management style: named subscriptions, two keys each, scoped to servers.

Keys are never held in clear in the config: a SHA-256 digest, or a Key Vault secret
(read through the shared SecretStore, so a rotated or revoked key takes effect within
its cache TTL). Comparison is constant-time over digests.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets as random_secrets
from typing import Mapping, Protocol

from ..config.inbound import KeyRef, Subscription
from ..config.model import SecretRef
from ..errors import CredentialUnavailable

logger = logging.getLogger("shared.inbound.keys")

KEY_BYTES = 32


class SecretSource(Protocol):
    async def get(self, ref: SecretRef) -> str: ...


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh subscription key: 256 random bits, URL-safe."""
    return random_secrets.token_urlsafe(KEY_BYTES)


class SubscriptionKeys:
    def __init__(self, subscriptions: Mapping[str, Subscription], secrets: SecretSource | None) -> None:
        self.subscriptions = subscriptions
        self.secrets = secrets

    async def _expected_digest(self, subscription: Subscription, slot: str, ref: KeyRef) -> str | None:
        """The key's digest; None when it cannot be read (that key alone then matches nothing)."""
        if ref.sha256 is not None:
            return ref.sha256
        if ref.secret is None or self.secrets is None:
            return None
        try:
            return key_digest(await self.secrets.get(ref.secret))
        except CredentialUnavailable as failure:
            # One deleted or disabled secret must not lock every subscription out. The
            # warning names the subscription; the secret and its vault only at DEBUG.
            reason = "not found or not allowed" if failure.status == 502 else "Key Vault unavailable"
            logger.warning(
                "subscription %r: its %s key could not be read from Key Vault (%s); it matches no caller until it can",
                subscription.name,
                slot,
                reason,
            )
            logger.debug("subscription %r %s key: %s", subscription.name, slot, failure.message)
            return None

    async def identify(self, presented: str) -> Subscription | None:
        """The subscription whose primary or secondary key this is, if any.

        Every readable key is compared, so the time taken does not depend on which one matched.
        """
        digest = key_digest(presented).encode()
        found: Subscription | None = None
        for subscription in self.subscriptions.values():
            for slot, ref in (("primary", subscription.primary), ("secondary", subscription.secondary)):
                if ref is None:
                    continue
                expected = await self._expected_digest(subscription, slot, ref)
                if expected is not None and hmac.compare_digest(digest, expected.encode()):
                    found = found or subscription
        return found

    def secret_refs(self) -> list[SecretRef]:
        """Key Vault secrets holding keys, for start-up checks."""
        return key_secret_refs(self.subscriptions)


def key_secret_refs(subscriptions: Mapping[str, Subscription]) -> list[SecretRef]:
    """Key Vault secrets holding the subscriptions' keys."""
    refs = []
    for subscription in subscriptions.values():
        for ref in (subscription.primary, subscription.secondary):
            if ref is not None and ref.secret is not None:
                refs.append(ref.secret)
    return refs
