"""One heartbeat that ends whatever waits past its deadline.

Request heads and request bodies each have a time limit. A timer per request (or
per body chunk) costs more CPU than the rest of the work it guards (arming and
cancelling one was measured at several microseconds, the whole head parse at
about thirty), so, as Kestrel checks its connections once a second, one heartbeat
per watch looks at everything registered and expires what is overdue. Registering
is a dict assignment; a deadline fires at most one tick late.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Expirable(Protocol):
    def expire(self) -> None: ...


class Watch:
    def __init__(self, tick: float) -> None:
        self._tick = tick
        self._waiting: dict[Expirable, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, item: Expirable, loop: asyncio.AbstractEventLoop, until: float) -> None:
        """`item.expire()` is called once `loop.time()` passes `until`, unless released first."""
        self._waiting[item] = until
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(self._tick, self._beat)

    def release(self, item: Expirable) -> None:
        self._waiting.pop(item, None)

    def _beat(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for item in [item for item, until in self._waiting.items() if until <= now]:
            del self._waiting[item]
            item.expire()
        self._timer = self._loop.call_later(self._tick, self._beat) if self._waiting else None
