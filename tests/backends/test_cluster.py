"""The cluster part of the backend contract: registry, claiming live records, idempotent inserts.

Concurrency is real: several backend objects (separate connections) race on one store.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from taskflow.backends.base import InstanceInfo, SnapshotBackend
from taskflow.models import TaskStatus, utcnow
from tests.backends.conftest import F, I, P, R, S, Store, rec

STARTED = utcnow() - timedelta(minutes=1)


def info(instance_id: str, age: float = 0.0) -> InstanceInfo:
    return InstanceInfo(instance_id, "host-a", 4242, STARTED, utcnow() - timedelta(seconds=age))


async def opened(store: Store, count: int) -> list[SnapshotBackend]:
    backends = [store.make() for _ in range(count)]
    for backend in backends:
        await backend.open()
    return backends


async def test_heartbeat_registers_and_refreshes(backend: SnapshotBackend) -> None:
    await backend.heartbeat(info("web-1", age=30))
    await backend.heartbeat(info("web-2"))
    first = {i.instance_id: i for i in await backend.instances()}
    assert sorted(first) == ["web-1", "web-2"]
    assert (first["web-1"].host, first["web-1"].pid) == ("host-a", 4242)

    await backend.heartbeat(info("web-1"))
    refreshed = {i.instance_id: i for i in await backend.instances()}
    assert refreshed["web-1"].last_heartbeat > first["web-1"].last_heartbeat
    assert refreshed["web-1"].started_at == first["web-1"].started_at

    await backend.deregister("web-1")
    await backend.deregister("web-1")  # idempotent
    assert [i.instance_id for i in await backend.instances()] == ["web-2"]


async def test_each_expired_instance_goes_to_exactly_one_caller(store: Store) -> None:
    backends = await opened(store, 4)
    for n in range(10):
        await backends[0].heartbeat(info(f"dead-{n}", age=60))
    await backends[0].heartbeat(info("alive"))
    cutoff = utcnow() - timedelta(seconds=15)
    results = await asyncio.gather(*(b.expire_instances(cutoff) for b in backends))
    everything = [i for result in results for i in result]
    assert sorted(everything) == sorted(f"dead-{n}" for n in range(10))
    assert len(everything) == len(set(everything))
    assert [i.instance_id for i in await backends[0].instances()] == ["alive"]


async def test_live_owners_follow_live_records(store: Store, backend: SnapshotBackend) -> None:
    running = rec("r1", status=R, at=1)
    running.instance_id = "web-1"
    pending = rec("p1", status=P, at=2)
    pending.instance_id = "web-2"
    await backend.save([running, pending, rec("s1", status=S, at=3)])
    assert await backend.live_owners() == {"web-1", "web-2"}

    done = rec("r1", status=S, at=5)
    done.instance_id = "web-1"
    await backend.save([done])
    assert await backend.live_owners() == {"web-2"}
    assert await store.problems() == []


async def test_concurrent_claims_split_live_records_without_overlap(store: Store) -> None:
    backends = await opened(store, 3)
    victims = []
    for n in range(60):
        record = rec(f"t{n:03}", status=R if n % 2 else P, at=n)
        record.instance_id = "dead"
        victims.append(record)
    finished = rec("done", status=S, at=100)
    finished.instance_id = "dead"
    await backends[0].save([*victims, finished])

    claims = await asyncio.gather(
        *(b.claim_live("dead", f"survivor-{n}") for n, b in enumerate(backends))
    )
    claimed = [r.task_id for claim in claims for r in claim]
    assert sorted(claimed) == sorted(r.task_id for r in victims)
    assert len(claimed) == len(set(claimed))
    assert "dead" not in await backends[0].live_owners()
    assert await backends[0].claim_live("dead", "late") == []
    assert await store.problems() == []

    # The claimer settles each record; then nobody owns live work any more.
    for n, claim in enumerate(claims):
        for record in claim:
            record.status, record.end_time = TaskStatus.INTERRUPTED, utcnow()
            record.instance_id = f"survivor-{n}"
        await backends[n].save(claim)
    assert await backends[0].live_owners() == set()
    assert await store.problems() == []


async def test_claim_live_honours_the_limit_oldest_first(backend: SnapshotBackend) -> None:
    queued = []
    for n in range(5):
        record = rec(f"q{n}", status=P, at=n)
        record.instance_id = ""
        queued.append(record)
    await backend.save(queued)
    first = await backend.claim_live("", "web-1", limit=2)
    rest = await backend.claim_live("", "web-2")
    assert len(first) == 2 and len(rest) == 3
    assert {r.task_id for r in first + rest} == {f"q{n}" for n in range(5)}


async def test_claim_new_lets_exactly_one_caller_store_a_record(store: Store) -> None:
    backends = await opened(store, 5)
    copies = []
    for n in range(5):
        record = rec("order-42", status=P, at=n)
        record.instance_id = f"web-{n}"
        copies.append(record)
    results = await asyncio.gather(*(b.claim_new(c) for b, c in zip(backends, copies, strict=True)))
    winners = [n for n, result in enumerate(results) if result is None]
    assert len(winners) == 1
    winner = f"web-{winners[0]}"
    assert {r.instance_id for r in results if r is not None} == {winner}
    stored = await backends[0].get("order-42")
    assert stored is not None and stored.instance_id == winner


async def test_claim_new_replaces_a_failed_record_but_not_a_success(
    backend: SnapshotBackend,
) -> None:
    await backend.save([rec("k-failed", status=F, at=1), rec("k-ok", status=S, at=1)])
    again = rec("k-failed", status=P, at=2)
    assert await backend.claim_new(again) is None
    stored = await backend.get("k-failed")
    assert stored is not None and stored.status is TaskStatus.PENDING
    existing = await backend.claim_new(rec("k-ok", status=P, at=2))
    assert existing is not None and existing.status is TaskStatus.SUCCESS


async def test_a_record_taken_over_is_not_replaced_by_its_former_owners_copy(
    store: Store,
) -> None:
    cut_off, survivor = await opened(store, 2)
    running = replace(rec("t1", status=R, at=1), instance_id="web-1")
    other = replace(rec("t2", status=R, at=2), instance_id="web-1")
    assert await cut_off.save([running, other]) == []
    assert sorted(r.task_id for r in await survivor.claim_live("web-1", "web-2")) == ["t1", "t2"]
    verdict = replace(rec("t1", status=I, at=3), instance_id="web-2")
    assert await survivor.save([verdict]) == []

    # web-1 comes back with its own results: refused, the survivor's records stay.
    late_finish = replace(rec("t1", status=S, at=4), instance_id="web-1")
    late_live = replace(rec("t2", status=R, at=4), instance_id="web-1")
    mine = replace(rec("t3", status=S, at=4), instance_id="web-1")
    refused = await cut_off.save([late_finish, late_live, mine])
    assert sorted(refused) == ["t1", "t2"]
    kept = await survivor.get("t1")
    assert kept is not None and kept.status is I and kept.instance_id == "web-2"
    assert await survivor.get("t3") is not None
    # Parking for requeue (owner "") is not a late copy: it is written.
    parked = replace(rec("t4", status=P, at=5), instance_id="web-1")
    await cut_off.save([parked])
    assert await cut_off.save([replace(parked, instance_id="")]) == []
    assert "" in await survivor.live_owners()
    assert await store.problems() == []
