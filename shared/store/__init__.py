"""Shared state: what several gateway instances must agree on, behind one small interface.

Sign-in needs it for authorization codes (single use across instances) and refresh-token
generations; a credential manager will keep token rows in it. Values are opaque bytes:
callers encrypt what must stay secret before it gets here. Each entry expires; an
expired entry reads as absent.

    insert_if_absent(key, value, ttl) -> bool      create, unless a live entry exists
    get(key) -> Entry | None                       value and ETag
    replace(key, value, etag, ttl) -> bool         only if unchanged since that read
    delete(key, etag=None) -> bool

Versions: `memory` (one process) and `table` (Azure Table Storage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..config.model import MemoryStoreConfig, StoreConfig, TableStoreConfig

if TYPE_CHECKING:
    from ..identity import ManagedIdentity

MAX_KEY_CHARS = 200
MAX_VALUE_BYTES = 48 * 1024
"""Azure Table Storage holds at most 64 KiB per binary property."""


class StoreUnavailable(Exception):
    """The store could not be reached or answered unusably (never names a key or value)."""


@dataclass(frozen=True)
class Entry:
    value: bytes
    etag: str
    expires_at: float


class Store(Protocol):
    async def insert_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        """Create the entry; False when a live entry already holds the key."""
        ...

    async def get(self, key: str) -> Entry | None:
        ...

    async def replace(self, key: str, value: bytes, etag: str, ttl: float) -> bool:
        """Overwrite the entry only if it still has `etag`; False when another writer came first."""
        ...

    async def delete(self, key: str, etag: str | None = None) -> bool:
        ...

    async def aclose(self) -> None:
        ...


def check_entry(key: str, value: bytes) -> None:
    """Keys are the caller's own names (digests), never raw client input."""
    if not key or len(key) > MAX_KEY_CHARS or not all(c.isalnum() or c in "-_." for c in key):
        raise ValueError("store keys are 1-200 characters of letters, digits, '-', '_' and '.'")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueError(f"store values are at most {MAX_VALUE_BYTES} bytes")


def build_store(config: StoreConfig, *, identity: "ManagedIdentity") -> Store:
    if isinstance(config, TableStoreConfig):
        from .table import TableStore

        return TableStore(config, identity)
    assert isinstance(config, MemoryStoreConfig)
    from .memory import MemoryStore

    return MemoryStore()


__all__ = ["Entry", "Store", "StoreUnavailable", "build_store", "check_entry"]
