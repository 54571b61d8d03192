"""The JSON API: listing, filters, paging, detail, metrics, retry, and its error paths."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskManager
from tests.helpers import wait_finished, wait_until_idle

calls: list[tuple[str, object]] = []
failed_once: set[str] = set()


@pytest.fixture
async def api(make_client):
    manager = TaskManager(shutdown_timeout=0.2)
    app = FastAPI()

    @manager.task()
    def send_email(address: str) -> None:
        calls.append(("send_email", address))

    @manager.task(retries=1)
    def charge(amount: int) -> None:
        calls.append(("charge", amount))
        raise RuntimeError(f"card declined for {amount}")

    @manager.task()
    async def slow() -> None:
        await asyncio.sleep(5)

    @manager.task()
    async def fail_then_hang(token: str) -> None:
        if token not in failed_once:
            failed_once.add(token)
            raise RuntimeError("first run fails")
        await asyncio.sleep(5)

    funcs = {"send_email": send_email, "charge": charge, "slow": slow, "hang": fail_then_hang}

    @app.post("/enqueue/{name}")
    def enqueue(
        name: str, background_tasks: BackgroundTasks, arg: str | None = None, exact: bool = True
    ) -> dict:
        args: tuple[object, ...] = () if arg is None else (arg,)
        if name == "charge" and arg is not None:
            args = (int(arg),) if exact else (Decimal(arg),)  # a Decimal is not plain JSON
        return {"task_id": background_tasks.add_task(funcs[name], *args)}

    TaskAdmin(app, manager, display_func_args=False)
    async for client in make_client(app):
        yield manager, client


async def enqueue(client, name: str, arg: object = None, exact: bool = True) -> str:
    params = {} if arg is None else {"arg": str(arg), "exact": exact}
    response = await client.post(f"/enqueue/{name}", params=params)
    assert response.status_code == 200
    return response.json()["task_id"]


async def test_list_filters_and_orders_newest_first(api):
    manager, client = api
    mail_ids = [await enqueue(client, "send_email", f"u{i}@x") for i in range(3)]
    charge_id = await enqueue(client, "charge", 5)
    await wait_until_idle(manager)

    items = (await client.get("/tasks")).json()["items"]
    assert {i["task_id"] for i in items} == {*mail_ids, charge_id}
    ends = [i["end_time"] for i in items]
    assert ends == sorted(ends, reverse=True)

    failed = (await client.get("/tasks", params={"status": "failed"})).json()["items"]
    assert [i["task_id"] for i in failed] == [charge_id]
    assert failed[0]["attempts"] == 2
    assert failed[0]["error"] == "RuntimeError: card declined for 5"
    assert failed[0]["created_at"].endswith("+00:00")
    assert "args" not in failed[0]  # display_func_args is off

    mails = (await client.get("/tasks", params={"func_name": "send_email"})).json()["items"]
    assert sorted(i["task_id"] for i in mails) == sorted(mail_ids)


async def test_cursor_pages_through_everything_once(api):
    manager, client = api
    ids = {await enqueue(client, "send_email", f"p{i}") for i in range(25)}
    await wait_until_idle(manager)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/tasks", params=params)).json()
        seen += [i["task_id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == ids


BAD_FILTERS = [
    ({"status": "exploded"}, "status"),
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"cursor": "%%%"}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'[NaN, "x"]').decode()}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"[" * 700).decode()}, "cursor"),
    ({"since": "yesterday"}, "since"),
    ({"limit": "ten"}, "limit"),
]


@pytest.mark.parametrize(("params", "field"), BAD_FILTERS)
async def test_bad_filters_are_422_with_a_reason(api, params, field):
    _, client = api
    response = await client.get("/tasks", params=params)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [error["loc"] for error in errors] == [["query", field]]
    assert errors[0]["msg"]


def response_schema(app: FastAPI, path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON schema the app's own OpenAPI document gives for this response."""
    document = app.openapi()
    operation = document["paths"][path][method]
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


async def test_422_bodies_follow_the_openapi_schema(make_client):
    app = FastAPI()
    TaskAdmin(app, TaskManager())
    async for client in make_client(app):
        schema = response_schema(app, "/tasks", "get", 422)
        assert schema["$ref"] == "#/components/schemas/HTTPValidationError"
        for params, _ in BAD_FILTERS:
            response = await client.get("/tasks", params=params)
            assert response.status_code == 422
            jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)
        # The schema is strict enough to refuse the string this API used to answer with.
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"detail": "status 'x' is not one of: ..."}, schema)


async def test_limit_of_1000_is_accepted(api):
    _, client = api
    assert (await client.get("/tasks", params={"limit": 1000})).status_code == 200


async def test_unknown_id_is_404_json(api):
    _, client = api
    for response in (await client.get("/tasks/nope"), await client.post("/tasks/nope/retry")):
        assert response.status_code == 404
        assert response.json() == {"detail": "task nope not found"}


async def test_retry_runs_a_failed_task_again_with_its_arguments(api):
    manager, client = api
    failed_id = await enqueue(client, "charge", 42)
    await wait_finished(manager, failed_id)
    calls.clear()

    response = await client.post(f"/tasks/{failed_id}/retry")
    assert response.status_code == 202
    new_id = response.json()["task_id"]
    assert new_id != failed_id
    record = await wait_finished(manager, new_id)
    assert record.retry_of == failed_id
    assert calls == [("charge", 42), ("charge", 42)]


async def test_retry_is_409_for_tasks_that_did_not_fail(api):
    manager, client = api
    ok_id = await enqueue(client, "send_email", "ok@x")
    running_id = await enqueue(client, "slow")
    await wait_finished(manager, ok_id)
    while manager.get(running_id).status.value != "running":  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    for task_id, state in ((ok_id, "success"), (running_id, "running")):
        response = await client.post(f"/tasks/{task_id}/retry")
        assert response.status_code == 409
        assert f"is {state}" in response.json()["detail"]


async def test_retry_runs_from_the_stored_exact_arguments_once_memory_let_them_go(api):
    manager, client = api
    failed_id = await enqueue(client, "charge", 7)
    await wait_finished(manager, failed_id)
    assert manager._store.call_of(failed_id) is None  # the record's own arguments suffice
    shown = (await client.get(f"/tasks/{failed_id}")).json()
    assert shown["rerunnable"] is True and shown["retryable"] is True
    assert "args" not in shown  # stored to run again, but shown only with display_func_args
    calls.clear()
    response = await client.post(f"/tasks/{failed_id}/retry")
    assert response.status_code == 202
    await wait_finished(manager, response.json()["task_id"])
    assert calls == [("charge", 7), ("charge", 7)]
    assert type(calls[0][1]) is int


async def test_a_second_retry_request_returns_the_first_retry_instead_of_starting_another(api):
    manager, client = api
    failed_id = await enqueue(client, "hang", "double-click")
    await wait_finished(manager, failed_id)
    first = await client.post(f"/tasks/{failed_id}/retry")  # its retry hangs: still running
    second = await client.post(f"/tasks/{failed_id}/retry")  # a double click
    assert first.status_code == second.status_code == 202
    assert first.json()["task_id"] == second.json()["task_id"]
    assert len([r for r in await manager.aquery() if r.retry_of == failed_id]) == 1


async def test_retry_of_a_retry_that_failed_is_refused_with_the_way_on(api):
    manager, client = api
    failed_id = await enqueue(client, "charge", 3)
    await wait_finished(manager, failed_id)
    retry_id = (await client.post(f"/tasks/{failed_id}/retry")).json()["task_id"]
    await wait_finished(manager, retry_id)
    again = await client.post(f"/tasks/{failed_id}/retry")
    assert again.status_code == 409
    assert f"retried already as {retry_id}" in again.json()["detail"]
    assert (await client.post(f"/tasks/{retry_id}/retry")).status_code == 202


async def test_retry_is_409_when_the_arguments_are_no_longer_known(api):
    manager, client = api
    failed_id = await enqueue(client, "charge", 1, exact=False)
    await wait_finished(manager, failed_id)
    assert (await client.get(f"/tasks/{failed_id}")).json()["retryable"] is True  # in memory
    manager._store._calls.clear()  # as after the record left memory and came back from history
    shown = (await client.get(f"/tasks/{failed_id}")).json()
    assert shown["rerunnable"] is False and shown["retryable"] is False
    response = await client.post(f"/tasks/{failed_id}/retry")
    assert response.status_code == 409
    assert "not stored exactly" in response.json()["detail"]


async def test_metrics_count_by_status_and_function_with_percentiles(api):
    manager, client = api
    for i in range(4):
        await enqueue(client, "send_email", f"m{i}")
    await enqueue(client, "charge", 3)
    await wait_until_idle(manager)
    body = (await client.get("/tasks/metrics")).json()
    assert body["by_status"] == {"success": 4, "failed": 1}
    assert body["by_func"]["send_email"]["count"] == 4
    assert body["by_func"]["charge"]["count"] == 1
    assert body["duration"]["count"] == 5
    assert 0 <= body["duration"]["p50"] <= body["duration"]["p95"] <= body["duration"]["max"]
    assert body["persistence"]["backend"] is None


async def test_arguments_are_shown_only_with_display_func_args(make_client):
    manager = TaskManager()
    app = FastAPI()
    TaskAdmin(app, manager, display_func_args=True)

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque " + "x" * 500 + ">"

    @app.post("/x")
    def x(background_tasks: BackgroundTasks) -> dict:
        return {"id": background_tasks.add_task(print, "a", Opaque(), end="", flush=True)}

    async for client in make_client(app):
        task_id = (await client.post("/x")).json()["id"]
        body = (await client.get(f"/tasks/{task_id}")).json()
    assert body["args"][0] == "a"
    assert body["args"][1].startswith("<Opaque xxx") and body["args"][1].endswith("...")
    assert len(body["args"][1]) == 200
    assert body["kwargs"] == {"end": "", "flush": True}
