"""Behind nginx under a path prefix, round-robin across two instances: the dashboard still works."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

PREFIX = "/app"


def test_dashboard_under_a_prefix_through_round_robin_nginx(
    start_instance, nginx, open_tab, tmp_path
):
    db = tmp_path / "history.db"
    root = ["--root-path", PREFIX]
    web1 = start_instance("web-1", db=db, extra_args=root)
    web2 = start_instance("web-2", db=db, extra_args=root)
    proxy = nginx([web1, web2], PREFIX)

    tab = open_tab()
    page = tab.page
    failed_assets: list[str] = []
    page.on("response", lambda r: failed_assets.append(r.url) if r.status >= 400 else None)
    page.goto(f"{proxy}{PREFIX}/tasks/dashboard")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert page.locator('meta[name="taskflow-base"]').get_attribute("content") == "/app/tasks"

    # Requests through the balancer alternate between the instances; all show up live.
    ids, served_by = [], set()
    for i in range(6):
        body = httpx.post(
            f"{proxy}{PREFIX}/enqueue/resize_image", json={"args": [f"p{i}.png"]}
        ).json()
        ids.append(body["task_id"])
        served_by.add(body["instance_id"])
    assert served_by == {"web-1", "web-2"}
    for task_id in ids:
        expect(page.locator(f'#rows tr[data-id="{task_id}"]')).to_contain_text("Succeeded")
    instances = page.locator("#rows td:nth-child(4)").all_inner_texts()
    assert {"web-1", "web-2"} <= set(instances)

    page.locator(f'#rows tr[data-id="{ids[0]}"]').click()
    expect(page.locator("#detail .task-id")).to_have_text(ids[0])
    assert failed_assets == [], failed_assets
