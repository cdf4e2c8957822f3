"""WaitWatch: a read past its deadline times out; a read in time, or someone else's cancellation, is untouched."""

from __future__ import annotations

import asyncio

import pytest

from proxy.wait_watch import WaitTimedOut, WaitWatch


async def test_a_read_past_its_deadline_times_out_within_a_tick_and_the_task_goes_on() -> None:
    watch = WaitWatch(tick_s=0.02)
    sweeping = asyncio.create_task(watch.run())
    loop = asyncio.get_running_loop()
    never = asyncio.Event()

    async def stuck() -> bool:
        return await never.wait()

    started = loop.time()
    with pytest.raises(WaitTimedOut):
        await watch.wait(stuck, started + 0.1)
    assert 0.1 <= loop.time() - started < 0.3
    # The task is not left cancelled: it awaits as usual afterwards.
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0.05)
    sweeping.cancel()


async def test_a_read_that_comes_in_time_is_answered_and_forgotten() -> None:
    watch = WaitWatch(tick_s=0.01)
    sweeping = asyncio.create_task(watch.run())

    async def soon() -> str:
        await asyncio.sleep(0.03)
        return "message"

    assert await watch.wait(soon, asyncio.get_running_loop().time() + 1.0) == "message"
    await asyncio.sleep(0.05)  # sweeps after the read: nothing of it is left to cancel
    assert not watch._deadlines and not watch._fired
    sweeping.cancel()


async def test_another_cancellation_passes_through_as_it_came() -> None:
    watch = WaitWatch(tick_s=0.01)
    never = asyncio.Event()

    async def stuck() -> bool:
        return await never.wait()

    reader = asyncio.create_task(watch.wait(stuck, asyncio.get_running_loop().time() + 10.0))
    await asyncio.sleep(0.02)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
