"""The heartbeat behind the head and body time limits."""

from __future__ import annotations

import asyncio

from shared.watch import Watch


class Item:
    def __init__(self) -> None:
        self.expired = asyncio.Event()

    def expire(self) -> None:
        self.expired.set()


async def _watch_once(watch: Watch) -> tuple[bool, bool]:
    loop = asyncio.get_running_loop()
    overdue, released = Item(), Item()
    watch.watch(overdue, loop, loop.time() + 0.05)
    watch.watch(released, loop, loop.time() + 0.05)
    watch.release(released)
    await asyncio.wait_for(overdue.expired.wait(), 5)
    return overdue.expired.is_set(), released.expired.is_set()


async def test_an_overdue_item_expires_and_a_released_one_never_does():
    watch = Watch(tick=0.02)
    loop = asyncio.get_running_loop()
    late = Item()
    watch.watch(late, loop, loop.time() + 60)
    assert await _watch_once(watch) == (True, False)
    assert not late.expired.is_set()
    watch.release(late)


def test_a_watch_keeps_working_when_used_from_a_new_event_loop():
    watch = Watch(tick=0.02)

    async def leave_one_waiting() -> None:
        watch.watch(Item(), asyncio.get_running_loop(), asyncio.get_running_loop().time() + 60)

    asyncio.run(leave_one_waiting())  # this loop ends with its heartbeat still scheduled
    assert asyncio.run(_watch_once(watch)) == (True, False)
