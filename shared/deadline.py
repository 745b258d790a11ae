"""A deadline for the awaits of one task: asyncio.timeout without its bookkeeping.

asyncio.timeout builds a context manager and a state machine around each use; on
the proxy's hot path that was a measurable share of a request's CPU (bench/README.md).
This is the same mechanism (a timer that cancels the task, taken back if it fired)
with one timer handle and three attributes.
"""

from __future__ import annotations

import asyncio


class Deadline:
    __slots__ = ("_task", "_cancelling", "_fired", "_timer")

    def __init__(self, seconds: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline needs a running task")
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        self._timer = asyncio.get_running_loop().call_later(seconds, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def caused(self, error: BaseException) -> bool:
        """Whether `error` is this deadline's cancellation (then it is taken back).

        A cancellation from anyone else (e.g. server shutdown) stays a cancellation.
        """
        return (
            isinstance(error, asyncio.CancelledError) and self._fired and self._task.uncancel() <= self._cancelling
        )

    def cancel(self) -> None:
        self._timer.cancel()
