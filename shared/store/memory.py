"""The store in this process's memory: one instance only (several instances would each
accept the same single-use code once)."""

from __future__ import annotations

import itertools
import time
from typing import Callable

from . import Entry, check_entry

_SWEEP_EVERY = 256
"""Writes between sweeps of expired entries, so abandoned flows cannot pile up."""


class MemoryStore:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._entries: dict[str, Entry] = {}
        self._etags = itertools.count(1)
        self._writes = 0

    def _live(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= self.clock():
            del self._entries[key]
            return None
        return entry

    def _put(self, key: str, value: bytes, ttl: float) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = self.clock()
            for stale in [k for k, e in self._entries.items() if e.expires_at <= now]:
                del self._entries[stale]
        self._entries[key] = Entry(bytes(value), str(next(self._etags)), self.clock() + ttl)

    # No await between a check and its write: each method is atomic on the event loop.
    async def insert_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        check_entry(key, value)
        if self._live(key) is not None:
            return False
        self._put(key, value, ttl)
        return True

    async def get(self, key: str) -> Entry | None:
        return self._live(key)

    async def replace(self, key: str, value: bytes, etag: str, ttl: float) -> bool:
        check_entry(key, value)
        entry = self._live(key)
        if entry is None or entry.etag != etag:
            return False
        self._put(key, value, ttl)
        return True

    async def delete(self, key: str, etag: str | None = None) -> bool:
        entry = self._live(key)
        if entry is None or (etag is not None and entry.etag != etag):
            return False
        del self._entries[key]
        return True

    async def aclose(self) -> None:
        self._entries.clear()
