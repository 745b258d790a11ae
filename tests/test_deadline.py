"""shared.deadline: the hot path's lean replacement for asyncio.timeout."""

from __future__ import annotations

import asyncio

import pytest

from shared.deadline import Deadline


async def test_a_passed_deadline_cancels_the_awaits_and_says_it_did():
    deadline = Deadline(0.01)
    with pytest.raises(asyncio.CancelledError) as caught:
        await asyncio.Event().wait()
    assert deadline.caused(caught.value)
    assert asyncio.current_task().cancelling() == 0  # taken back: the task is not left cancelled


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    started = asyncio.Event()
    verdicts: list[bool] = []

    async def guarded():
        deadline = Deadline(60)
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError as cancelled:
            verdicts.append(deadline.caused(cancelled))
            raise
        finally:
            deadline.cancel()

    task = asyncio.ensure_future(guarded())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert verdicts == [False]


async def test_a_cancelled_deadline_never_fires():
    deadline = Deadline(0.01)
    deadline.cancel()
    # Outlive the deadline by waiting on something that ends later than it would have fired.
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, done.set_result, True)
    assert await done is True  # not cancelled on the way
