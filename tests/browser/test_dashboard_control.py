"""Task controls in a real browser: the Cancel buttons (row and detail), the cancelled badge,
card and filter, with and without the admin token."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Instance
from tests.browser.test_dashboard_live import open_dashboard, row

pytestmark = pytest.mark.browser

TOKEN = "browser-test-admin-token-0123456789"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def cluster(start_instance, tmp_path: Path) -> tuple[Instance, Instance]:
    db = tmp_path / "history.db"
    return start_instance("web-1", db=db), start_instance("web-2", db=db)


def test_the_detail_panel_cancels_a_running_task(cluster, open_tab):
    web1, _ = cluster
    task_id = web1.enqueue("generate_report", "yearly", seconds=60)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    expect(row(page, task_id)).to_contain_text("Running")
    row(page, task_id).locator("td").nth(2).click()
    expect(page.locator("#cancel")).to_be_visible()
    expect(page.locator("#retry")).to_be_hidden()
    page.click("#cancel")
    expect(page.locator("#toast")).to_contain_text("Cancelling task")
    expect(row(page, task_id)).to_contain_text("Cancelled", timeout=5_000)
    expect(page.locator("#detail .badge")).to_have_text("Cancelled")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#retry")).to_be_visible()  # a cancelled task can run again
    expect(page.locator("#count-cancelled")).to_have_text("1", timeout=5_000)
    assert web1.wait_finished(task_id)["status"] == "cancelled"


def test_the_row_button_cancels_a_task_of_another_instance(cluster, open_tab):
    web1, web2 = cluster
    task_id = web2.enqueue("generate_report", "monthly", seconds=60)
    tab = open_tab()
    page = open_dashboard(tab, web1)  # web1 shows web2's live task, and passes the request on
    button = row(page, task_id).locator("button[data-cancel]")
    expect(button).to_be_visible(timeout=5_000)
    button.click()
    expect(page.locator("#detail")).to_be_hidden()  # the click cancels, it opens nothing
    expect(row(page, task_id)).to_contain_text("Cancelled", timeout=5_000)
    expect(row(page, task_id).locator("button[data-cancel]")).to_have_count(0)
    page.select_option("#f-status", "cancelled")
    expect(page.locator("#rows tr[data-id]")).to_have_count(1)
    expect(row(page, task_id)).to_be_visible()
    assert web2.wait_finished(task_id)["instance_id"] == "web-2"


def test_finished_tasks_have_no_cancel_button(cluster, open_tab):
    web1, _ = cluster
    task_id = web1.enqueue("send_welcome_email", "done@example.com")
    web1.wait_finished(task_id)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    expect(row(page, task_id)).to_contain_text("Succeeded")
    expect(row(page, task_id).locator("button[data-cancel]")).to_have_count(0)
    row(page, task_id).click()
    expect(page.locator("#detail .task-id")).to_have_text(task_id)
    expect(page.locator("#cancel")).to_be_hidden()


def test_cancel_with_the_admin_token_goes_through_the_session(start_instance, open_tab):
    web1 = start_instance("web-1", token=TOKEN)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.post(
        f"{web1.url}/enqueue/generate_report",
        json={"args": ["secured"], "kwargs": {"seconds": 60}},
    )
    task_id = response.json()["task_id"]
    assert httpx.post(f"{web1.url}/tasks/{task_id}/cancel").status_code == 401
    tab = open_tab()
    page = tab.page
    page.goto(f"{web1.url}/tasks/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    row(page, task_id).locator("button[data-cancel]").click()
    expect(row(page, task_id)).to_contain_text("Cancelled", timeout=5_000)
    assert web1.wait_finished(task_id, **headers)["status"] == "cancelled"


def test_progress_bars_and_the_logs_tab_follow_a_running_task(cluster, open_tab):
    web1, _ = cluster
    task_id = web1.enqueue("crunch_numbers", steps=12, delay=0.25)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    bar = row(page, task_id).locator(".progress.in-row")
    expect(bar).to_be_visible(timeout=5_000)
    row(page, task_id).locator("td").nth(2).click()
    expect(page.locator("#detail-progress")).to_be_visible()
    first = int(page.locator("#detail-progress .progress").get_attribute("aria-valuenow") or 0)
    page.click('#detail-tabs button[data-tab="logs"]')
    expect(page.locator("#logs-pane")).to_be_visible()
    expect(page.locator("#details-pane")).to_be_hidden()
    expect(page.locator("#logs-pane tr.log").first).to_contain_text("step 1 done")
    # Live: more lines and more progress arrive while the Logs tab stays open.
    expect(page.locator("#logs-pane tr.log")).to_have_count(12, timeout=10_000)
    expect(page.locator("#logs-pane .level.warning")).to_have_count(2)
    expect(page.locator("#logs-pane tr.log").nth(4)).to_contain_text('{"step":5}')
    expect(page.locator('#detail-tabs button[data-tab="logs"]')).to_have_text("Logs (12)")
    expect(page.locator("#detail .badge")).to_have_text("Succeeded", timeout=5_000)
    assert first < 100
    page.click('#detail-tabs button[data-tab="details"]')
    expect(page.locator("#details-pane .task-id")).to_have_text(task_id)
    expect(row(page, task_id).locator(".progress")).to_have_count(0)  # finished: no bar
    logs = httpx.get(f"{web1.url}/tasks/{task_id}/logs").json()
    assert [line["message"] for line in logs["logs"]][:2] == ["step 1 done", "step 2 done"]


def test_a_remote_tasks_progress_reaches_the_open_detail(cluster, open_tab):
    web1, web2 = cluster
    task_id = web2.enqueue("crunch_numbers", steps=20, delay=0.5)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    row(page, task_id).wait_for(state="attached", timeout=5_000)
    row(page, task_id).locator("td").nth(2).click()
    expect(page.locator("#detail-progress .progress-text")).to_contain_text("of 20", timeout=5_000)
    seen = page.locator("#detail-progress .progress-text").inner_text()
    expect(page.locator("#detail-progress .progress-text")).not_to_have_text(seen, timeout=5_000)
    page.click('#detail-tabs button[data-tab="logs"]')
    expect(page.locator("#logs-pane tr.log").first).to_contain_text("step 1 done")
    page.click("#cancel")
    expect(page.locator("#detail .badge")).to_have_text("Cancelled", timeout=5_000)


def test_log_lines_and_progress_messages_stay_text(cluster, open_tab):
    web1, _ = cluster
    task_id = web1.enqueue("say", XSS)
    web1.wait_finished(task_id)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    row(page, task_id).click()
    page.click('#detail-tabs button[data-tab="logs"]')
    expect(page.locator("#logs-pane tr.log")).to_have_count(1)
    expect(page.locator("#logs-pane .log-message")).to_contain_text(XSS)
    expect(page.locator("#detail img")).to_have_count(0)  # open_tab fails on any dialog too


def test_the_tag_filter_narrows_the_list_and_the_detail_shows_tags(cluster, open_tab):
    web1, web2 = cluster
    acme_pro = web1.enqueue("resize_image", "a.jpg", tags={"tenant": "acme", "plan": "pro"})
    acme = web2.enqueue("resize_image", "b.jpg", tags={"tenant": "acme"})
    bolt = web1.enqueue("resize_image", "c.jpg", tags={"tenant": "bolt"})
    for task_id in (acme_pro, acme, bolt):
        web1.wait_finished(task_id)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    expect(page.locator("#rows tr[data-id]")).to_have_count(3)
    page.fill("#f-tag", "tenant:acme")
    expect(page.locator("#rows tr[data-id]")).to_have_count(2)
    expect(row(page, bolt)).to_have_count(0)
    page.fill("#f-tag", "tenant:acme, plan:pro")
    expect(page.locator("#rows tr[data-id]")).to_have_count(1)
    row(page, acme_pro).click()
    expect(page.locator('#detail .tag[data-tag="plan:pro"]')).to_have_text("plan: pro")
    # Live: a new task with the tags shows up under the filter, one without does not.
    live = web2.enqueue("resize_image", "d.jpg", tags={"tenant": "acme", "plan": "pro"})
    other = web2.enqueue("resize_image", "e.jpg", tags={"tenant": "acme"})
    expect(row(page, live)).to_be_visible(timeout=5_000)
    web2.wait_finished(other)
    page.wait_for_timeout(1_000)
    expect(row(page, other)).to_have_count(0)
    page.fill("#f-tag", "no-colon")
    expect(page.locator("#toast")).to_contain_text("must be key:value")
    page.click("#f-clear")
    expect(page.locator("#rows tr[data-id]")).to_have_count(5)
