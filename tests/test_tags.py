"""Tags: add_task(..., tags={...}), their validation, GET /tasks?tag=key:value and query(tags=)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import BackgroundTasks, FastAPI
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskflow import InvalidQuery, TaskAdmin, TaskManager
from taskflow.models import MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS, check_tags
from taskflow.query import TaskQuery
from tests.helpers import wait_finished, wait_until_idle


@pytest.fixture
async def app_and_manager(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, TaskManager]]:
    manager = TaskManager(snapshot_db=tmp_path / "tasks.db", shutdown_timeout=1.0)
    app = FastAPI()
    TaskAdmin(app, manager)

    @manager.task
    async def bill(customer: str) -> None: ...

    @app.post("/bill")
    async def enqueue(customer: str, tenant: str, background_tasks: BackgroundTasks) -> dict:
        tags = {"tenant": tenant, "kind": "billing"}
        return {"task_id": background_tasks.add_task(bill, customer, tags=tags)}

    @app.post("/bad")
    async def bad(background_tasks: BackgroundTasks) -> dict:
        try:
            background_tasks.add_task(bill, "x", tags={"ten:ant": "acme"})
        except ValueError as exc:
            return {"error": str(exc)}
        return {"error": None}

    async with manager.lifespan():
        yield app, manager


async def test_tags_filter_the_listing_and_combine(app_and_manager) -> None:
    app, manager = app_and_manager
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        ids = {}
        for customer, tenant in (("c1", "acme"), ("c2", "bolt"), ("c3", "acme")):
            response = await client.post(f"/bill?customer={customer}&tenant={tenant}")
            ids[customer] = response.json()["task_id"]
        await wait_until_idle(manager)
        await manager.flush()
        acme = (await client.get("/tasks", params={"tag": "tenant:acme"})).json()["items"]
        assert [item["task_id"] for item in acme] == [ids["c3"], ids["c1"]]
        assert acme[0]["tags"] == {"tenant": "acme", "kind": "billing"}
        both = await client.get("/tasks", params=[("tag", "tenant:bolt"), ("tag", "kind:billing")])
        assert [item["task_id"] for item in both.json()["items"]] == [ids["c2"]]
        none = await client.get("/tasks", params=[("tag", "tenant:bolt"), ("tag", "kind:other")])
        assert none.json()["items"] == []
        for bad in ("no-colon", ":acme", "ten ant:acme", "tenant:", "x:" + "v" * 300):
            response = await client.get("/tasks", params={"tag": bad})
            assert response.status_code == 422, bad
        assert (await client.post("/bad")).json()["error"].startswith("tag key")
    records = manager.query(tags={"tenant": "acme"})
    assert {r.task_id for r in records} == {ids["c1"], ids["c3"]}
    assert [r.task_id for r in await manager.aquery(tags={"tenant": "bolt"})] == [ids["c2"]]


async def test_a_retry_keeps_the_tags(tmp_path: Path) -> None:
    manager = TaskManager(snapshot_db=tmp_path / "tasks.db", shutdown_timeout=1.0)

    @manager.task
    async def flaky() -> None:
        raise RuntimeError("no")

    async with manager.lifespan():
        failed = await wait_finished(manager, manager.submit(flaky, tags={"tenant": "acme"}))
        retry = await manager.retry(failed.task_id)
        assert retry.tags == {"tenant": "acme"}


def test_tag_bounds() -> None:
    assert check_tags({}) is None and check_tags(None) is None
    with pytest.raises(ValueError, match="at most"):
        check_tags({f"k{n}": "v" for n in range(MAX_TAGS + 1)})
    with pytest.raises(ValueError, match="tag key"):
        check_tags({"k" * (MAX_TAG_KEY + 1): "v"})
    with pytest.raises(ValueError, match="string value"):
        check_tags({"k": "v" * (MAX_TAG_VALUE + 1)})
    with pytest.raises(ValueError, match="string value"):
        check_tags({"k": 1})
    with pytest.raises(ValueError, match="control character"):
        check_tags({"k": "a\nb"})
    with pytest.raises(ValueError, match="UTF-8"):
        check_tags({"k": "\ud800"})
    with pytest.raises(ValueError, match="dict"):
        check_tags(["tenant:acme"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=70), st.text(max_size=210), max_size=20))
def test_any_tags_are_either_accepted_whole_or_refused_with_a_value_error(tags: dict) -> None:
    try:
        kept = check_tags(tags)
    except ValueError:
        return
    assert kept == (tags or None)
    if kept:  # whatever is accepted can be filtered on
        query = TaskQuery.build(tags=[f"{k}:{v}" for k, v in list(kept.items())[:8]])
        assert len(query.tags) == min(len(kept), 8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=10))
def test_any_tag_filter_is_served_or_an_invalid_query(filters: list[str]) -> None:
    fields = []
    try:
        TaskQuery.build(tags=filters)
    except InvalidQuery as exc:
        fields.append(exc.field)
    assert fields in ([], ["tag"])


async def test_a_task_reads_its_own_tags() -> None:
    from taskflow import task_context

    manager = TaskManager(shutdown_timeout=1.0)
    seen: list[dict[str, str]] = []

    @manager.task
    def which_tenant() -> None:
        seen.append(task_context().tags)

    async with manager.lifespan():
        await wait_finished(manager, manager.submit(which_tenant, tags={"tenant": "acme"}))
        await wait_finished(manager, manager.submit(which_tenant))
    assert seen == [{"tenant": "acme"}, {}]
