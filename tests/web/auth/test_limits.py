"""Failed attempts at the admin token: limited per client address and in total, with a 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.dashboard.routes import FAILED_LOGIN_DELAY
from taskflow.web.auth import LoginLimiter, TooManyAttempts
from taskflow.web.auth.limits import PER_ADDRESS, TOTAL, WINDOW

TOKEN = "limits-test-token"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_over_its_limit_waits_until_its_oldest_failure_leaves_the_window():
    clock = Clock()
    limiter = LoginLimiter(per_address=3, total=100, window=60, clock=clock)
    for _ in range(3):
        limiter.check("10.0.0.1")
        limiter.failed("10.0.0.1")
        clock.now += 10
    with pytest.raises(TooManyAttempts) as refused:
        limiter.check("10.0.0.1")
    assert refused.value.retry_after == 30  # the first failure was 30 s ago, of 60
    limiter.check("10.0.0.2")  # others are not held up
    clock.now += 30
    limiter.check("10.0.0.1")  # the first failure has left the window


def test_all_addresses_together_have_a_limit_too():
    clock = Clock()
    limiter = LoginLimiter(per_address=3, total=5, window=60, clock=clock)
    for i in range(5):
        limiter.check(f"10.0.0.{i}")
        limiter.failed(f"10.0.0.{i}")
    with pytest.raises(TooManyAttempts) as refused:
        limiter.check("10.9.9.9")  # an address never seen
    assert refused.value.retry_after == 60
    clock.now += 60
    limiter.check("10.9.9.9")


def test_the_defaults_are_about_one_failure_a_second():
    assert PER_ADDRESS <= 10 and TOTAL / WINDOW <= 1.0
    with pytest.raises(ValueError, match="at least 1"):
        LoginLimiter(per_address=0)


@pytest.fixture
async def limited() -> AsyncIterator[tuple[FastAPI, Callable[[str], httpx.AsyncClient]]]:
    """A secured app allowing 3 failures per address and 6 in total; clients by address."""
    app = FastAPI()
    admin = TaskAdmin(app, TaskManager(shutdown_timeout=0.2), admin_token=TOKEN)
    admin.auth.limiter = LoginLimiter(per_address=3, total=6, window=60)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))

        def client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://test")

        yield app, client


async def test_the_login_form_answers_429_even_for_the_right_token(limited):
    _, client = limited
    async with client("10.0.0.1") as guesser, client("10.0.0.2") as admin:
        for _ in range(3):
            wrong = await guesser.post("/tasks/login", data={"token": "guess"})
            assert wrong.status_code == 401
        for token in ("guess", TOKEN):  # right or wrong: the answer must not tell
            refused = await guesser.post("/tasks/login", data={"token": token})
            assert refused.status_code == 429
            assert 0 < int(refused.headers["retry-after"]) <= 60
            assert "Try again in" in refused.text
            assert "set-cookie" not in refused.headers
        ok = await admin.post("/tasks/login", data={"token": TOKEN})  # another address
        assert ok.status_code == 303


async def test_bearer_guesses_count_and_are_refused_alike(limited):
    _, client = limited
    async with client("10.0.0.3") as guesser, client("10.0.0.4") as browser:
        assert (await browser.post("/tasks/login", data={"token": TOKEN})).status_code == 303
        for _ in range(3):
            wrong = await guesser.get("/tasks", headers={"Authorization": "Bearer guess"})
            assert wrong.status_code == 401
        right = await guesser.get("/tasks", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 429
        assert right.headers["retry-after"]
        assert right.headers["cache-control"] == "no-store"
        assert "too many failed attempts" in right.json()["detail"]
        page = await guesser.get("/tasks/dashboard", headers={"Authorization": "Bearer x"})
        assert page.status_code == 429 and page.headers["retry-after"]
        # Open sessions go on: they do not present the token.
        assert (await browser.get("/tasks")).status_code == 200
        async with client("10.0.1.1") as other:  # 3 + 3 = 6 failures in total
            for _ in range(3):
                await other.get("/tasks", headers={"Authorization": "Bearer guess"})
        async with client("10.0.1.3") as newcomer:
            refused = await newcomer.post("/tasks/login", data={"token": TOKEN})
            assert refused.status_code == 429
        assert (await browser.get("/tasks")).status_code == 200


async def test_parallel_guesses_cannot_pass_the_limit_and_the_delay_blocks_nothing(limited):
    _, client = limited
    async with client("10.0.0.5") as guesser, client("10.0.0.6") as bystander:
        started = time.monotonic()
        guesses = [guesser.post("/tasks/login", data={"token": f"g{i}"}) for i in range(20)]
        answers = await asyncio.gather(*guesses, bystander.get("/healthz"))
        elapsed = time.monotonic() - started
    codes = sorted(response.status_code for response in answers[:-1])
    assert codes == [401] * 3 + [429] * 17  # 85 guesses a second is over
    assert answers[-1].status_code == 200
    # The three failures waited FAILED_LOGIN_DELAY each, at the same time, holding nothing.
    assert elapsed < 2 * FAILED_LOGIN_DELAY
