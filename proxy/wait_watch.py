"""Deadlines for waits that almost never wait, checked by one sweep rather than a timer each.

The first body message of nearly every proxied request is there when it is asked for (a small
JSON body comes with the headers), and nearly every write to a client goes out at once, yet an
asyncio timeout around each would cost about 10 µs (a Timeout, a timer handle, weak
references), most of what the body timeouts cost in all. Here a wait notes its task and
deadline in a dict; a sweep every `TICK_S` cancels the tasks whose wait is past its deadline,
and the wait turns that cancellation back into a timeout (`WaitTimedOut`). A deadline fires up
to `TICK_S` late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

TICK_S = 0.25
T = TypeVar("T")


class WaitTimedOut(Exception):
    """The read was still waiting at its deadline."""


class WaitWatch:
    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self._deadlines: dict[asyncio.Task[object], float] = {}
        self._fired: set[asyncio.Task[object]] = set()

    async def wait(self, waited: Callable[[], Awaitable[T]], deadline: float) -> T:
        """`await waited()`, or WaitTimedOut once the loop's clock is past `deadline` (with `run` running)."""
        task = asyncio.current_task()
        assert task is not None
        self._deadlines[task] = deadline
        try:
            return await waited()
        except asyncio.CancelledError:
            if task not in self._fired:
                raise  # someone else's cancellation: passed on as it came
            self._fired.discard(task)
            task.uncancel()
            raise WaitTimedOut from None
        finally:
            self._deadlines.pop(task, None)

    async def run(self) -> None:
        """Cancel the waits past their deadline, every `tick_s`, forever."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            late = [task for task, deadline in self._deadlines.items() if deadline <= now]
            for task in late:
                del self._deadlines[task]
                self._fired.add(task)
                task.cancel()
