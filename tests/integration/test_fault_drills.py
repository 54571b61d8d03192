"""Fault drills: real app processes, real backends, real faults; docs/operations.md#fault-drills.

Every drill asserts the same two things:

* **accepted = stored**: every task id that a 2xx response returned has a terminal record in the
  backend once the fault has healed, read directly through a fresh backend object;
* **truthful readiness**: ``/readyz`` turns 503 within a bound after the fault starts, stays 503
  while it lasts, and is 200 again after it heals;

and measures what clients saw meanwhile (see :mod:`tests.integration.probe`). The figures are
printed (``pytest -rP`` shows them) and summarised in the table in docs/operations.md.

The bounds are generous (two shared cores run these next to other test runs) but still fail
when the property breaks: readiness that never turns, or turns only after a client timeout
(~20 s), an enqueue that waits ``accept_timeout`` for every request, a lost task.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from taskflow.backends import PostgresBackend, RedisBackend, SqliteBackend
from taskflow.models import TaskRecord
from tests.conftest import RedisProcess
from tests.integration.conftest import Server
from tests.integration.history import BackendUnderTest, completions, wait_for
from tests.integration.postgres_process import PostgresProcess, pg_bin
from tests.integration.probe import Probe, quantile
from tests.integration.sqlite_locker import SCRATCH_BYTES, SCRATCH_TABLE, SqliteLocker
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

APP = "tests.integration.apps.basic:app"

#: The library's default ``accept_timeout`` (the test app keeps it): the longest a response
#: may wait for the write carrying its tasks.
ACCEPT_TIMEOUT = 1.0
#: A dead backend (refused connections, failing writes) is noticed at the next write or ping:
#: ~2 s at most; 6 s leaves room for a loaded host.
DETECT_DEAD = 6.0
#: A hung backend is noticed by a ping unanswered for 2 s (pings every 2 s) or a write
#: unanswered for 3 s: ~3.5 to 4.5 s. 9 s still fails a client timeout's ~20 s.
DETECT_HUNG = 9.0
#: After the fault heals, a not-ready backend is pinged every second and the first write that
#: works makes it ready: ~1 to 2 s.
RECOVER_WITHIN = 10.0
#: Longest any enqueue may take while a fault lasts: accept_timeout plus a loaded host's margin.
ENQUEUE_MAX = ACCEPT_TIMEOUT + 1.5
#: Median enqueue latency once the fault is detected: the response does not wait any more.
#: (Waiting for accept_timeout at every request would make it ~1 s.)
ENQUEUE_MEDIAN_DETECTED = 0.5
#: Median enqueue latency with a healthy backend is a few milliseconds; a poison record that
#: stopped persistence made every enqueue wait accept_timeout (~1 s).
ENQUEUE_MEDIAN_HEALTHY = 0.25
#: How long the fault goes on after it was detected, with clients still enqueueing.
HOLD = 2.0
#: How long every accepted task may take to show up stored once the fault healed.
STORED_WITHIN = 20.0


# -- what every drill checks ---------------------------------------------------------------


@dataclass
class Timeline:
    """Monotonic times of one drill, and what the probe saw."""

    probe: Probe
    fault: float
    detected: float  # seconds from fault to the first 503
    healed: float
    recovered: float  # seconds from healed to the first 200 after it

    def check_readiness(self) -> None:
        """Once 503, readiness stays 503 until the fault heals (no flapping back to 200)."""
        during = self.probe.statuses_between(self.fault + self.detected, self.healed)
        assert during and set(during) == {503}, f"readyz while the fault lasted: {during}"

    def check_enqueue_latency(self) -> None:
        """Every enqueue during the fault answered within accept_timeout plus a margin, and
        once the fault was detected the responses stopped waiting."""
        undetected = self.probe.enqueue_seconds(self.fault, self.fault + self.detected)
        detected = self.probe.enqueue_seconds(self.fault + self.detected, self.healed)
        assert detected, "no enqueue request was answered while the fault was detected"
        worst = max(undetected + detected)
        assert worst <= ENQUEUE_MAX, f"an enqueue took {worst:.2f}s during the fault"
        median = quantile(detected, 0.5)
        assert median <= ENQUEUE_MEDIAN_DETECTED, (
            f"enqueues still waited once the fault was detected (median {median:.2f}s)"
        )
        assert not self.probe.failed_enqueues(), self.probe.failed_enqueues()[:5]

    def report(self, name: str) -> None:
        """Print the drill's figures (``pytest -rP`` shows them)."""
        undetected, detected = (
            self.probe.enqueue_seconds(self.fault, self.fault + self.detected),
            self.probe.enqueue_seconds(self.fault + self.detected, self.healed),
        )
        listing = self.probe.listing_seconds(self.fault, self.healed)
        normal = self.probe.enqueue_seconds(0, self.fault)
        print(
            f"DRILL {name}: detected {self.detected:.2f}s, recovered {self.recovered:.2f}s; "
            f"enqueue p50/max before the fault {_ms(normal)}, until detected {_ms(undetected)}"
            f", once detected {_ms(detected)}; listing p50/max during {_ms(listing)}; "
            f"{len(self.probe.accepted)} accepted"
        )


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{quantile(values, 0.5) * 1000:.0f}/{max(values) * 1000:.0f} ms (n={len(values)})"


def drill(
    url: str,
    inject: Callable[[], object],
    heal: Callable[[], object],
    *,
    detect_within: float,
    hold: float = HOLD,
    while_detected: Callable[[], object] = lambda: None,
) -> Timeline:
    """Probe ``url``, inject the fault, wait for readiness to turn, call ``while_detected``,
    hold, heal, wait for readiness to turn back; the probe stops a second after that."""
    with Probe(url) as probe:
        time.sleep(1.0)  # a baseline under normal operation
        fault = time.monotonic()
        inject()
        detected = probe.wait_ready(False, fault, detect_within, "after the fault started")
        while_detected()
        time.sleep(hold)
        healed = time.monotonic()
        heal()
        recovered = probe.wait_ready(True, healed, RECOVER_WITHIN, "after the fault healed")
        time.sleep(1.0)
    return Timeline(probe, fault, detected, healed, recovered)


def assert_accepted_stored(backend: BackendUnderTest, ids: list[str]) -> float:
    """Wait until every id has a terminal record in the backend (read through a fresh backend
    object); returns the seconds it took."""
    assert ids, "the drill accepted no task"
    missing: list[str] = []
    live: list[str] = []

    def all_stored() -> bool:
        nonlocal missing, live
        stored = backend.stored()
        missing = [i for i in ids if i not in stored]
        live = [i for i in ids if i in stored and not stored[i].status.finished]
        return not missing and not live

    try:
        return wait_for(all_stored, STORED_WITHIN, "every accepted task to be stored")
    except AssertionError:
        raise AssertionError(
            f"of {len(ids)} accepted tasks, {len(missing)} are missing from the backend "
            f"(e.g. {missing[:3]}) and {len(live)} are still live there (e.g. {live[:3]})"
        ) from None


def persistence(url: str) -> dict[str, object]:
    return dict(httpx.get(f"{url}/tasks/metrics", timeout=10).json()["persistence"])


def redis_history(server: RedisProcess, prefix: str = "drill") -> BackendUnderTest:
    url = f"{server.url}/0"
    return BackendUnderTest(
        "redis",
        {"TEST_BACKEND_URL": url, "TEST_REDIS_PREFIX": prefix},
        lambda: RedisBackend(url, prefix=prefix),
    )


def sqlite_history(db: Path) -> BackendUnderTest:
    return BackendUnderTest("sqlite", {"TEST_DB": str(db)}, lambda: SqliteBackend(db))


@pytest.fixture
def locker(tmp_path: Path) -> Iterator[SqliteLocker]:
    """A process that takes the write lock of ``tmp_path / "tasks.db"`` when told to."""
    holder = SqliteLocker(tmp_path / "tasks.db")
    yield holder
    holder.stop()


def check_sqlite_file(db: Path) -> None:
    """The file is sound and the locker's uncommitted writes left no trace."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert SCRATCH_TABLE not in tables


# -- 1. the backend is killed --------------------------------------------------------------


@pytest.mark.timeout(90)
def test_redis_killed_and_restarted_loses_nothing(run_server, private_redis):
    history = redis_history(private_redis)
    app = run_server(APP, env=history.env)

    timeline = drill(app.url, private_redis.kill, private_redis.resume, detect_within=DETECT_DEAD)

    timeline.report("redis SIGKILL")
    timeline.check_readiness()
    timeline.check_enqueue_latency()
    assert_accepted_stored(history, timeline.probe.accepted)
    assert persistence(app.url)["dropped_unflushed"] == 0


@pytest.mark.timeout(90)
def test_sqlite_writer_killed_holding_the_write_lock_loses_nothing(run_server, tmp_path, locker):
    history = sqlite_history(tmp_path / "tasks.db")
    app = run_server(APP, env=history.env)

    wal = tmp_path / "tasks.db-wal"

    def lock_with_uncommitted_pages_in_the_wal() -> None:
        size = wal.stat().st_size
        locker.lock()
        assert wal.stat().st_size - size >= SCRATCH_BYTES // 2, "nothing spilled into the WAL"

    timeline = drill(
        app.url, lock_with_uncommitted_pages_in_the_wal, locker.kill, detect_within=DETECT_HUNG
    )

    timeline.report("sqlite writer SIGKILLed holding the lock")
    timeline.check_readiness()
    timeline.check_enqueue_latency()
    assert_accepted_stored(history, timeline.probe.accepted)
    check_sqlite_file(tmp_path / "tasks.db")


@pytest.fixture
def private_postgres() -> Iterator[PostgresProcess]:
    """A private PostgreSQL cluster the drill may kill and pause (never the machine's own)."""
    if pg_bin() is None:
        pytest.skip("no PostgreSQL installed (/usr/lib/postgresql/*/bin): cannot kill one")
    server = PostgresProcess.create()
    yield server
    server.stop()


def postgres_history(server: PostgresProcess, schema: str = "drill") -> BackendUnderTest:
    url = f"{server.url}?schema={schema}"
    return BackendUnderTest("postgres", {"TEST_BACKEND_URL": url}, lambda: PostgresBackend(url))


@pytest.mark.timeout(120)
def test_postgres_killed_and_restarted_loses_nothing(run_server, private_postgres):
    history = postgres_history(private_postgres)
    app = run_server(APP, env=history.env)

    timeline = drill(
        app.url, private_postgres.kill, private_postgres.start, detect_within=DETECT_DEAD
    )

    timeline.report("postgres SIGKILL (crash), restarted")
    timeline.check_readiness()
    timeline.check_enqueue_latency()
    assert_accepted_stored(history, timeline.probe.accepted)
    assert persistence(app.url)["dropped_unflushed"] == 0


# -- 2. the backend hangs ------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_redis_hung_is_not_ready_within_seconds_and_loses_nothing(run_server, private_redis):
    history = redis_history(private_redis)
    app = run_server(APP, env=history.env)

    timeline = drill(app.url, private_redis.pause, private_redis.unpause, detect_within=DETECT_HUNG)

    timeline.report("redis SIGSTOP")
    timeline.check_readiness()
    timeline.check_enqueue_latency()
    assert_accepted_stored(history, timeline.probe.accepted)
    assert persistence(app.url)["dropped_unflushed"] == 0


@pytest.mark.timeout(120)
def test_postgres_hung_is_not_ready_within_seconds_and_loses_nothing(run_server, private_postgres):
    history = postgres_history(private_postgres)
    app = run_server(APP, env=history.env)

    timeline = drill(
        app.url, private_postgres.pause, private_postgres.unpause, detect_within=DETECT_HUNG
    )

    timeline.report("postgres SIGSTOP")
    timeline.check_readiness()
    timeline.check_enqueue_latency()
    assert_accepted_stored(history, timeline.probe.accepted)
    assert persistence(app.url)["dropped_unflushed"] == 0


@pytest.mark.timeout(90)
def test_sqlite_write_lock_held_elsewhere_is_not_ready_and_loses_nothing(
    run_server, tmp_path, locker
):
    history = sqlite_history(tmp_path / "tasks.db")
    app = run_server(APP, env=history.env)

    timeline = drill(app.url, locker.lock, locker.release, detect_within=DETECT_HUNG)

    timeline.report("sqlite write lock held by another process")
    timeline.check_readiness()
    timeline.check_enqueue_latency()
    assert_accepted_stored(history, timeline.probe.accepted)
    check_sqlite_file(tmp_path / "tasks.db")


# -- 3. the disk is full (SQLite) ------------------------------------------------------------


#: The small disk's size. Above SqliteBackend's checkpoint_size (4 MiB): until a checkpoint,
#: the WAL grows by a few 8 KiB pages per write, and on a 4 MiB disk it fills the space the
#: filler left by itself, after which no checkpoint can grow the database file either.
TMPFS_SIZE = "16m"


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs, unmounted at teardown whatever happened (lazily if still busy)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        pytest.skip("no mount command: the disk-full drill needs a small tmpfs")
    if result.returncode != 0:
        pytest.skip(
            f"mounting a tmpfs is not permitted here ({result.stderr.strip() or 'no reason'}): "
            "the disk-full drill needs root or CAP_SYS_ADMIN"
        )
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until the filesystem is full."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
        small = b"\0" * 512  # the last partial chunk's worth
        try:
            while True:
                out.write(small)
        except OSError:
            pass
    return filler


@pytest.mark.timeout(90)
def test_sqlite_disk_full_is_not_ready_while_writes_fail_and_loses_nothing(small_tmpfs, run_server):
    db = small_tmpfs / "tasks.db"
    history = sqlite_history(db)
    app = run_server(APP, env=history.env)
    filler: list[Path] = []

    def not_ready_because_writes_fail() -> None:
        # Reads (the ping) still work on a full disk: only the failing writes can say so.
        body = httpx.get(f"{app.url}/readyz", timeout=10).json()
        assert body["backend_reachable"] and not body["backend_writable"], body
        assert "full" in body["backend_error"], body

    timeline = drill(
        app.url,
        lambda: filler.append(fill(small_tmpfs)),
        lambda: filler[0].unlink(),
        detect_within=DETECT_DEAD,
        while_detected=not_ready_because_writes_fail,
    )

    timeline.report("sqlite disk full")
    timeline.check_readiness()
    timeline.check_enqueue_latency()
    assert_accepted_stored(history, timeline.probe.accepted)
    metrics = persistence(app.url)
    assert metrics["flush_failures"] > 0 and metrics["dropped_unflushed"] == 0
    check_sqlite_file(db)


# -- 4. poison records ---------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_poison_records_never_stop_persistence(run_server, shared_backend):
    app = run_server(APP, env={**shared_backend.env, "TEST_DISPLAY_FUNC_ARGS": "1"})
    with Probe(app.url, listing=False) as probe:
        time.sleep(0.5)
        poisoned = time.monotonic()
        with httpx.Client(base_url=app.url, timeout=10) as client:
            poison = [
                client.post("/poison", params={"kind": kind}).json()["task_id"]
                for kind in ("surrogate", "bigint", "surrogate", "bigint")
            ]
        time.sleep(3.0)  # enqueueing goes on after the poison
    after = probe.enqueue_seconds(poisoned, time.monotonic())
    print(f"DRILL poison ({shared_backend.name}): enqueue p50/max after the poison {_ms(after)}")

    assert set(probe.statuses_between(0, time.monotonic())) == {200}, "readyz left 200"
    assert quantile(after, 0.5) < ENQUEUE_MEDIAN_HEALTHY, (
        f"enqueues wait for writes that never land (median {quantile(after, 0.5):.2f}s)"
    )
    assert not probe.failed_enqueues()
    assert_accepted_stored(shared_backend, probe.accepted + poison)
    stored = shared_backend.stored()
    assert [stored[i].status.value for i in poison] == ["failed", "success"] * 2
    assert "caf" in (stored[poison[0]].error or "")
    metrics = persistence(app.url)
    assert metrics["made_safe"] >= 1, metrics
    assert metrics["flush_failures"] == 0 and metrics["quarantined"] == 0, metrics

    app.signal(signal.SIGTERM)
    app.wait_clean_exit()
    log = app.log()
    assert "Application shutdown failed" not in log, log
    assert ", 0 unflushed" in next(line for line in log.splitlines() if "taskflow shutdown" in line)


# -- 5. one instance cut off from the backend for longer than instance_expiry --------------

#: Fast membership: a heartbeat every 0.5 s, an instance silent for 2 s is declared gone.
EXPIRY = 2.0
FAST = {"TEST_HEARTBEAT": "0.5", "TEST_EXPIRY": str(EXPIRY)}
#: The tasks running on the instance when it is cut off: long enough to be running (and
#: stored as running) at the cut, short enough to finish on both sides before it heals.
LONG_TASK = 3.0
#: How long the instance stays cut off: past the expiry and a heartbeat round (the survivor
#: takes its tasks over), the survivor's rerun and the cut-off instance's own run.
CUT = 7.0
#: How long after the heal every record may stay live (pending or running) at most.
SETTLE_WITHIN = 20.0
#: What the returning instance logs when it learns that it was declared gone.
DECLARED_GONE = "declared gone"


@dataclass
class LongTasks:
    """Tasks started on the instance that gets cut off, all running when it is cut."""

    tracked: dict[str, str]  # task id -> token: requeue_on_interrupt, the survivor reruns them
    plain: list[str]  # not requeued: the survivor marks them interrupted

    @property
    def ids(self) -> list[str]:
        return [*self.tracked, *self.plain]


def instance_id(server: Server) -> str:
    return str(httpx.get(f"{server.url}/healthz", timeout=10).json()["instance_id"])


def start_long_tasks(victim: str, survivor: str) -> LongTasks:
    """Start them on ``victim`` and wait until ``survivor`` sees every one of them running:
    only what is stored as live can be taken over."""
    with httpx.Client(timeout=10) as client:
        params = {"token": "long", "count": 3, "seconds": LONG_TASK}
        body = client.post(f"{victim}/tracked", params=params).json()
        tracked = dict(zip(body["task_ids"], body["tokens"], strict=True))
        plain = client.post(f"{victim}/burst", params={"count": 3, "seconds": LONG_TASK}).json()
        tasks = LongTasks(tracked, plain["task_ids"])

        def all_running() -> bool:
            statuses = [client.get(f"{survivor}/tasks/{i}").json()["status"] for i in tasks.ids]
            return set(statuses) == {"running"}

        wait_for(all_running, 5, "the long tasks to show as running on the other instance")
    return tasks


def wait_taken_over(survivor: str, tasks: LongTasks, survivor_id: str, after: float) -> float:
    """Seconds from ``after`` until the survivor owns the rerun tasks and has interrupted the
    others."""

    def taken_over() -> bool:
        with httpx.Client(base_url=survivor, timeout=10) as client:
            records = [client.get(f"/tasks/{i}").json() for i in tasks.ids]
        reruns = [r for r in records if r["task_id"] in tasks.tracked]
        others = [r for r in records if r["task_id"] not in tasks.tracked]
        return all(r["instance_id"] == survivor_id for r in reruns) and all(
            r["status"] == "interrupted" for r in others
        )

    wait_for(taken_over, EXPIRY + 8, "the survivor to take the cut-off instance's tasks over")
    return time.monotonic() - after


def assert_nothing_stays_live(history: BackendUnderTest) -> float:
    """Every record in the backend reaches a terminal status within SETTLE_WITHIN."""
    live: list[str] = []

    def none_live() -> bool:
        nonlocal live
        live = [f"{r.task_id} {r.status.value} on {r.instance_id}" for r in _live(history)]
        return not live

    try:
        return wait_for(none_live, SETTLE_WITHIN, "no live record left")
    except AssertionError:
        raise AssertionError(f"still live {SETTLE_WITHIN}s after the heal: {live}") from None


def _live(history: BackendUnderTest) -> list[TaskRecord]:
    return [r for r in history.stored().values() if not r.status.finished]


def assert_both_runs_kept(
    history: BackendUnderTest, tasks: LongTasks, log: Path, gone: str, survivor: str
) -> None:
    """A task that ran on both sides shows both runs: the survivor's under the original id,
    the returning instance's late result as a record of its own with ``late_of``.

    Every broken expectation is listed, not only the first (what overwrote what says most).
    """
    stored, done = history.stored(), completions(log)
    late = {r.late_of: r for r in stored.values() if r.late_of is not None}
    problems: list[str] = []
    for token in tasks.tracked.values():
        if sorted(done[token]) != sorted([gone, survivor]):
            problems.append(f"{token} should have completed on both instances: {done[token]}")
    for task_id in tasks.ids:
        kept = stored[task_id]
        if task_id in tasks.tracked:  # rerun by the survivor
            survived = (kept.status.value, kept.instance_id) == ("success", survivor)
        else:  # marked interrupted by the survivor
            reason = f"instance {gone} was lost"
            survived = kept.status.value == "interrupted" and reason in (kept.error or "")
        if not survived or kept.late_of is not None:
            problems.append(
                f"{task_id} ({kept.func_name}): the survivor's record was not kept; stored: "
                f"{kept.status.value} on {kept.instance_id}, error {kept.error!r}"
            )
        record = late.get(task_id)
        if record is None:
            problems.append(f"{task_id}: no record with late_of for {gone}'s own run")
        elif (record.status.value, record.instance_id, record.func_name) != (
            "success",
            gone,
            kept.func_name,
        ) or record.task_id == task_id:
            problems.append(f"{task_id}: its late record is wrong: {record.to_dict()}")
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(120)
def test_partition_longer_than_instance_expiry_keeps_both_runs(run_server, private_redis, tmp_path):
    log = tmp_path / "completions.log"
    history = redis_history(private_redis)
    env = {**history.env, **FAST, "TEST_COMPLETIONS": str(log)}
    with TcpProxy(("127.0.0.1", private_redis.port)) as proxy:
        via_proxy = {**env, "TEST_BACKEND_URL": f"redis://127.0.0.1:{proxy.port}/0"}
        victim = run_server(APP, env=via_proxy)
        survivor = run_server(APP, env=env)
        gone, kept = instance_id(victim), instance_id(survivor)
        tasks = start_long_tasks(victim.url, survivor.url)
        with Probe(victim.url, listing=False) as cut_off, Probe(survivor.url) as other:
            time.sleep(0.3)
            cut = time.monotonic()
            proxy.cut()
            detected = cut_off.wait_ready(False, cut, DETECT_HUNG, "on the cut-off instance")
            taken = wait_taken_over(survivor.url, tasks, kept, cut)
            time.sleep(max(0.0, cut + CUT - time.monotonic()))
            healed = time.monotonic()
            proxy.heal()
            recovered = cut_off.wait_ready(True, healed, RECOVER_WITHIN, "after the heal")
            time.sleep(1.0)
        assert proxy.accepted > 0  # the victim really went through the proxy
    print(
        f"DRILL partition (redis): cut-off instance not ready after {detected:.2f}s, its tasks "
        f"taken over after {taken:.2f}s, ready {recovered:.2f}s after the heal; enqueue p50/max "
        f"on it during the cut {_ms(cut_off.enqueue_seconds(cut, healed))}; "
        f"{len(cut_off.accepted) + len(other.accepted)} accepted"
    )
    assert set(cut_off.statuses_between(cut + detected, healed)) == {503}
    assert set(other.statuses_between(0, time.monotonic())) == {200}, "the survivor left 200"
    assert max(cut_off.enqueue_seconds(cut, healed)) <= ENQUEUE_MAX
    assert_accepted_stored(history, tasks.ids + cut_off.accepted + other.accepted)
    assert_nothing_stays_live(history)
    assert_both_runs_kept(history, tasks, log, gone, kept)
    assert DECLARED_GONE in victim.log(), "the returning instance did not say it was declared gone"


@pytest.mark.timeout(120)
def test_frozen_instance_declared_gone_keeps_both_runs(run_server, shared_backend, tmp_path):
    """The counterpart of the partition that SQLite has too (one host, no network to cut): a
    process that stops for longer than instance_expiry (SIGSTOP here; a VM pause, a stalled
    disk or swap storm in life) and then carries on with its late results."""
    log = tmp_path / "completions.log"
    env = {**shared_backend.env, **FAST, "TEST_COMPLETIONS": str(log)}
    victim = run_server(APP, env=env)
    survivor = run_server(APP, env=env)
    gone, kept = instance_id(victim), instance_id(survivor)
    tasks = start_long_tasks(victim.url, survivor.url)
    with Probe(survivor.url) as other:
        frozen = time.monotonic()
        victim.signal(signal.SIGSTOP)
        try:
            taken = wait_taken_over(survivor.url, tasks, kept, frozen)
            time.sleep(max(0.0, frozen + CUT - time.monotonic()))
        finally:
            victim.signal(signal.SIGCONT)
        resumed = time.monotonic()
        ready = wait_for(
            lambda: httpx.get(f"{victim.url}/readyz", timeout=10).status_code == 200,
            RECOVER_WITHIN,
            "the resumed instance to be ready",
        )
    print(
        f"DRILL frozen instance ({shared_backend.name}): its tasks taken over after "
        f"{taken:.2f}s, ready {ready:.2f}s after SIGCONT; {len(other.accepted)} accepted"
    )
    assert set(other.statuses_between(0, resumed)) == {200}, "the survivor left 200"
    assert_accepted_stored(shared_backend, tasks.ids + other.accepted)
    assert_nothing_stays_live(shared_backend)
    assert_both_runs_kept(shared_backend, tasks, log, gone, kept)
    assert DECLARED_GONE in victim.log(), "the returning instance did not say it was declared gone"


# -- 6. every instance blocked by the same stall for longer than instance_expiry ------------

#: How long the backend hangs in the shared-stall drill: past the expiry and the stall bound.
SHARED_STALL = 6.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_stall_every_instance_shares_declares_no_instance_gone(
    request, run_server, tmp_path, locker, kind
):
    """No instance was silent while the others were heard: a hung backend that blocks every
    instance's heartbeat alike (a held SQLite lock, a paused Redis) must not make the first
    one to heartbeat after it declare the others gone and run their tasks a second time."""
    log = tmp_path / "completions.log"
    if kind == "sqlite":
        history = sqlite_history(tmp_path / "tasks.db")
        hang, heal = locker.lock, locker.release
    else:
        redis_server = request.getfixturevalue("private_redis")
        history = redis_history(redis_server)
        hang, heal = redis_server.pause, redis_server.unpause
    env = {**history.env, **FAST, "TEST_COMPLETIONS": str(log)}
    servers = [run_server(APP, env=env) for _ in range(2)]
    owner: dict[str, str] = {}  # task id -> the instance that accepted it
    with httpx.Client(timeout=10) as client:
        for server in servers:
            params = {"token": f"on-{server.port}", "count": 2, "seconds": SHARED_STALL + 2}
            body = client.post(f"{server.url}/tracked", params=params).json()
            owner.update(dict.fromkeys(body["task_ids"], body["instance_id"]))
    with Probe(servers[0].url) as first, Probe(servers[1].url) as second:
        time.sleep(0.5)
        stalled = time.monotonic()
        hang()
        for probe in (first, second):
            probe.wait_ready(False, stalled, DETECT_HUNG, "while the backend hangs")
        time.sleep(max(0.0, stalled + SHARED_STALL - time.monotonic()))
        healed = time.monotonic()
        heal()
        for probe in (first, second):
            probe.wait_ready(True, healed, RECOVER_WITHIN, "after the backend is back")
        time.sleep(1.0)
    assert_accepted_stored(history, [*owner, *first.accepted, *second.accepted])
    stored = history.stored()
    ran = {i: (stored[i].status.value, stored[i].instance_id) for i in owner}
    print(f"DRILL shared stall ({kind}): {ran}")
    gone = [line for s in servers for line in s.log().splitlines() if "claiming its tasks" in line]
    assert not gone, f"instances that all waited for the same backend declared others gone: {gone}"
    assert ran == {i: ("success", instance) for i, instance in owner.items()}, ran
    assert all(len(runs) == 1 for runs in completions(log).values()), completions(log)
