"""Logouts: refused at once where they happen, within a second everywhere else (real backends)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from taskflow.backends.base import BackendError
from taskflow.web.auth.revocation import CHECK_SECONDS, Revocations
from taskflow.web.auth.sessions import SessionSigner

SIGNER = SessionSigner("revocation-test-token")


def session():
    parsed = SIGNER.parse(SIGNER.issue())
    assert parsed is not None
    return parsed


async def test_a_logout_on_one_instance_reaches_the_other_within_a_second(two_instances):
    here, there = (Revocations(backend) for backend in two_instances)
    ended, kept = session(), session()
    assert not await there.revoked(ended)  # read once: "not revoked" is now remembered
    await here.revoke(ended)
    assert await here.revoked(ended)  # at once where the logout happened
    started = time.monotonic()
    while not await there.revoked(ended):
        assert time.monotonic() - started < CHECK_SECONDS + 0.5, "the logout never arrived"
        await asyncio.sleep(0.05)
    assert not await there.revoked(kept)
    assert not await here.revoked(kept)


async def test_a_remembered_answer_spares_the_backend(two_instances):
    backend = two_instances[0]
    revocations = Revocations(backend)
    reads = 0
    real = backend.session_revoked

    async def counted(session_id: str) -> bool:
        nonlocal reads
        reads += 1
        return await real(session_id)

    backend.session_revoked = counted  # type: ignore[method-assign]
    one = session()
    for _ in range(50):
        assert not await revocations.revoked(one)
    assert reads == 1


async def test_without_a_backend_logouts_stay_in_the_process():
    revocations = Revocations(None)
    ended = session()
    await revocations.revoke(ended)
    assert await revocations.revoked(ended)
    assert not await revocations.revoked(session())


async def test_an_unreadable_backend_lets_sessions_in_and_says_so_once(two_instances, caplog):
    backend = two_instances[0]
    revocations = Revocations(backend, check_seconds=0)
    ended_here, other = session(), session()
    await revocations.revoke(ended_here)
    await backend.close()  # every call now fails with BackendError
    caplog.set_level(logging.WARNING, logger="taskflow.web.auth")
    for _ in range(3):
        assert not await revocations.revoked(other)
        assert await revocations.revoked(ended_here)  # still refused where it was ended
    warnings = [r for r in caplog.records if "logouts on other instances" in r.getMessage()]
    assert len(warnings) == 1
    with pytest.raises(BackendError):
        await revocations.revoke(other)
    assert await revocations.revoked(other)  # refused here all the same
