"""Backend tokens, cached: refreshed ahead of expiry, fetched once however many ask at once.

A token is served from the cache until its refresh time (the issuer's `refresh_on`
if it gave one, else up to five minutes before expiry, or half-way for short-lived
tokens). The first request after that refreshes it while the rest wait on the same
fetch (single flight); if the refresh fails while the old token still has some
life left, the old token is used and the failure logged. Keys name the mode, the
identity, the scope and (on-behalf-of) the user; entries are evicted least
recently used beyond `max_entries`, so per-user caches stay bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Hashable

from ..errors import CredentialUnavailable

logger = logging.getLogger("shared.outbound")

REFRESH_MARGIN = 300.0
"""Refresh a token this long before it expires (at most half its remaining life)."""
MIN_VALIDITY = 30.0
"""Never hand out a token closer to expiry than this: the backend call itself takes time."""
RECHECK_INTERVAL = 30.0
"""When an issuer hands back a token that is already due for refresh, ask again no sooner than this."""


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    expires_on: float
    """Epoch seconds."""
    refresh_on: float | None = None


@dataclass(frozen=True)
class _Entry:
    token: Token
    refresh_at: float


class TokenCache:
    def __init__(self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        """Epoch seconds; injectable so tests can move time forward."""
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._fetches: dict[Hashable, asyncio.Task[Token]] = {}

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[Token]]) -> str:
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now < entry.refresh_at:
            self._entries.move_to_end(key)
            return entry.token.value
        still_valid = entry is not None and now < entry.token.expires_on - MIN_VALIDITY
        try:
            return (await self._single_flight(key, fetch)).value
        except CredentialUnavailable as failure:
            if not still_valid:
                raise
            assert entry is not None
            logger.warning(
                "token refresh failed (%d), using the current token for %.0fs more", failure.status, entry.token.expires_on - now
            )
            logger.debug("token refresh failed: %s", failure.message)  # names the step: DEBUG only
            return entry.token.value

    def _single_flight(self, key: Hashable, fetch: Callable[[], Awaitable[Token]]) -> Awaitable[Token]:
        task = self._fetches.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key, fetch))
            self._fetches[key] = task
            task.add_done_callback(lambda _: self._fetches.pop(key, None))
        # shield: one waiter going away (client disconnect) must not cancel the others' fetch
        return asyncio.shield(task)

    async def _fetch(self, key: Hashable, fetch: Callable[[], Awaitable[Token]]) -> Token:
        token = await fetch()
        now = self.clock()
        refresh_at = token.expires_on - min(REFRESH_MARGIN, max(0.0, token.expires_on - now) / 2)
        if token.refresh_on is not None:
            refresh_at = min(refresh_at, token.refresh_on)
        refresh_at = max(refresh_at, min(now + RECHECK_INTERVAL, token.expires_on - MIN_VALIDITY))
        self._entries[key] = _Entry(token, refresh_at)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return token

    async def aclose(self) -> None:
        for task in list(self._fetches.values()):
            task.cancel()
        self._entries.clear()
