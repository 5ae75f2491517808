"""The health check loop ends when the app cancels it, whatever point its probe is at."""

from __future__ import annotations

import asyncio

from fastreg.server.health import Check, _check_forever


async def test_a_cancelled_check_loop_ends_at_any_point_of_its_probe() -> None:
    """On 3.11 `asyncio.wait_for` swallows a cancel that arrives as the probe ends; the loop
    then ran on and the app's cleanup waited for it forever (129 of these 300 cancels hung)."""

    async def probe() -> None:
        await asyncio.sleep(0)

    for step in range(300):
        task = asyncio.create_task(_check_forever(Check("quick", probe, interval=0.0)))
        for _ in range(step % 7):  # cancel at each point of the probe and the sleep
            await asyncio.sleep(0)
        task.cancel()
        for _ in range(10):
            await asyncio.sleep(0)
        assert task.done(), f"the loop outlived its cancel (step {step})"
        assert task.cancelled()
