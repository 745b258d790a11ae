"""What every outbound mode shares, and the one method each implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from starlette.types import Scope

from ..caller import Caller
from ..retry import RetryPolicy
from .cache import TokenCache

if TYPE_CHECKING:  # the Azure SDKs: loaded only for a config whose modes use them
    from ..identity import ManagedIdentity
    from ..secrets import SecretStore

RawHeaders = list[tuple[bytes, bytes]]


@dataclass
class Machinery:
    """One per gateway: caches and clients the modes share."""

    secrets: SecretStore
    identity: ManagedIdentity
    tokens: TokenCache
    retry: RetryPolicy


class Mode(Protocol):
    async def headers(self, caller: Caller, request: Scope) -> RawHeaders:
        """Headers carrying the backend credential for this request."""
        ...


def bearer(token: str) -> RawHeaders:
    return [(b"authorization", b"Bearer " + token.encode("ascii"))]
