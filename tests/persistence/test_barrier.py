"""WriteBarrier: a waiter returns once a write that took its batch after the call succeeded."""

from __future__ import annotations

import asyncio

from taskflow.persistence.flusher import WriteBarrier


async def test_a_waiter_needs_the_write_after_the_one_in_flight():
    barrier = WriteBarrier()
    in_flight = barrier.take()  # took its batch before our records changed
    waiter = barrier.ticket(5.0)
    await asyncio.sleep(0)
    barrier.done(in_flight)
    await asyncio.sleep(0)
    assert not waiter.done()
    barrier.done(barrier.take())
    assert await waiter is True


async def test_waiters_of_one_write_all_return_and_later_ones_keep_waiting():
    barrier = WriteBarrier()
    first = [barrier.ticket(5.0) for _ in range(3)]
    await asyncio.sleep(0)
    number = barrier.take()
    later = barrier.ticket(5.0)
    await asyncio.sleep(0)
    barrier.done(number)
    assert await asyncio.gather(*first) == [True, True, True]
    assert not later.done()
    barrier.done(barrier.take())
    assert await later is True


async def test_a_write_that_never_succeeds_times_the_waiter_out():
    barrier = WriteBarrier()
    assert await barrier.ticket(0.05) is False
    barrier.done(barrier.take())  # the timed-out waiter is let go quietly


async def test_a_cancelled_waiter_does_not_break_the_others():
    barrier = WriteBarrier()
    cancelled = barrier.ticket(5.0)
    kept = barrier.ticket(5.0)
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    barrier.done(barrier.take())
    assert await kept is True


async def test_each_waiter_times_out_at_its_own_deadline():
    barrier = WriteBarrier()
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow = barrier.ticket(0.6)
    await asyncio.sleep(0)
    assert await barrier.ticket(0.05) is False  # a shorter deadline behind a longer one
    assert loop.time() - started < 0.4
    assert not slow.done()
    assert await slow is False
    assert loop.time() - started >= 0.6
    # Waiters arriving after the timer fired get a timer again.
    assert await barrier.ticket(0.05) is False
