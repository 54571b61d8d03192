"""The dashboard's admin controls in a real browser: the time-range filter, bulk retry and purge
(a count first, then a confirmation in the page, never a browser dialog), and the audit view,
on an open admin and behind a login (the CSRF token sent), everything shown as text."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Instance

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"
TOKEN = "browser-admin-actions-token"
#: A moment as a datetime-local field takes it: the browser's local time, to the second.
LOCAL = """(iso) => {
    const d = new Date(iso);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:`
        + `${p(d.getMinutes())}:${p(d.getSeconds())}`;
}"""


@pytest.fixture
def web(start_instance, tmp_path: Path) -> Instance:
    return start_instance("web-1", db=tmp_path / "history.db")


def open_dashboard(tab, instance: Instance):
    page = tab.page
    page.goto(f"{instance.url}/tasks/dashboard")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


def finished(instance: Instance, *task_ids: str, **headers: str) -> None:
    for task_id in task_ids:
        instance.wait_finished(task_id, **headers)


def test_the_time_range_filter_narrows_the_list(web, open_tab):
    old = [web.enqueue("resize_image", f"old/{i}.png") for i in range(2)]
    finished(web, *old)
    time.sleep(1.2)  # the field has seconds: the boundary falls between the two groups
    boundary = time.time()
    new = [web.enqueue("resize_image", f"new/{i}.png") for i in range(3)]
    finished(web, *new)
    tab = open_tab()
    page = open_dashboard(tab, web)
    rows = page.locator("#rows tr[data-id]")
    expect(rows).to_have_count(5)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(boundary)))
    local = page.evaluate(LOCAL, iso)

    page.fill("#f-since", local)
    expect(rows).to_have_count(3)
    for task_id in new:
        expect(page.locator(f'#rows tr[data-id="{task_id}"]')).to_be_visible()
    page.fill("#f-since", "")
    page.fill("#f-until", local)
    expect(rows).to_have_count(2)
    for task_id in old:
        expect(page.locator(f'#rows tr[data-id="{task_id}"]')).to_be_visible()
    # A task finishing now is past "To": the live update does not add it.
    late = web.enqueue("resize_image", "late.png")
    finished(web, late)
    page.wait_for_timeout(500)
    expect(rows).to_have_count(2)
    page.click("#f-clear")
    expect(rows).to_have_count(6)
    assert page.input_value("#f-until") == ""


def test_bulk_retry_counts_first_and_retries_on_confirmation(web, open_tab):
    failed = [web.enqueue("explode", f"outage {i}") for i in range(3)]
    fine = web.enqueue("send_welcome_email", "a@example.com")
    finished(web, *failed, fine)
    tab = open_tab()
    page = open_dashboard(tab, web)
    dialog = page.locator("#bulk-dialog")

    page.click("#bulk-retry")  # Cancel: nothing happens
    expect(page.locator("#bulk-count")).to_contain_text("3 failed or interrupted tasks match")
    page.click("#bulk-cancel")
    expect(dialog).to_be_hidden()
    assert not any(item["retry_of"] for item in httpx.get(f"{web.url}/tasks").json()["items"])

    page.select_option("#f-status", "success")  # a status bulk retry does not take
    page.click("#bulk-retry")
    expect(page.locator("#bulk-count")).to_contain_text("failed or interrupted tasks")
    expect(page.locator("#bulk-confirm")).to_be_disabled()
    page.click("#bulk-cancel")

    page.select_option("#f-status", "failed")
    page.select_option("#f-func", "explode")
    page.click("#bulk-retry")
    expect(page.locator("#bulk-filters")).to_contain_text("status failed · function explode")
    expect(page.locator("#bulk-confirm")).to_have_text("Retry 3 tasks")
    page.click("#bulk-confirm")
    expect(dialog).to_be_hidden()
    expect(page.locator("#toast")).to_contain_text("Retried 3 tasks")
    items = httpx.get(f"{web.url}/tasks", params={"limit": 100}).json()["items"]
    assert sorted(item["retry_of"] for item in items if item["retry_of"]) == sorted(failed)
    # The retries failed too, and the list (filtered on failed) shows them, tagged.
    expect(page.locator("#rows tr[data-id] .tag")).to_have_count(3, timeout=5_000)


def test_purge_counts_first_and_deletes_on_confirmation(web, open_tab):
    done = [web.enqueue("send_welcome_email", f"u{i}@example.com") for i in range(3)]
    kept = web.enqueue("explode", "kept")
    finished(web, *done, kept)
    running = web.enqueue("generate_report", "long", seconds=30)
    tab = open_tab()
    page = open_dashboard(tab, web)
    rows = page.locator("#rows tr[data-id]")
    expect(rows).to_have_count(5)

    page.select_option("#f-status", "running")
    page.click("#bulk-purge")
    expect(page.locator("#bulk-count")).to_contain_text("never deleted")
    expect(page.locator("#bulk-confirm")).to_be_disabled()
    page.click("#bulk-cancel")

    page.select_option("#f-status", "success")
    page.click("#bulk-purge")
    expect(page.locator("#bulk-count")).to_contain_text("3 finished tasks match")
    expect(page.locator("#bulk-confirm")).to_have_text("Delete 3 tasks")
    page.click("#bulk-confirm")
    expect(page.locator("#toast")).to_contain_text("Purged 3 tasks")
    expect(rows).to_have_count(0)
    page.click("#f-clear")
    expect(rows).to_have_count(2)  # the failed task and the running one
    expect(page.locator(f'#rows tr[data-id="{running}"]')).to_contain_text("Running")
    expect(page.locator(f'#rows tr[data-id="{kept}"]')).to_be_visible()

    page.click("#bulk-purge")  # unfiltered: the failed task is all that is left to purge
    expect(page.locator("#bulk-count")).to_contain_text("1 finished task match")
    page.keyboard.press("Escape")
    expect(page.locator("#bulk-dialog")).to_be_hidden()


def test_the_audit_view_lists_actions_newest_first_as_text(web, open_tab):
    failed = web.enqueue("explode", "once")
    finished(web, failed)
    assert httpx.post(f"{web.url}/tasks/{failed}/retry").status_code == 202
    body = {"func_name": XSS, "confirm": True}
    assert httpx.post(f"{web.url}/tasks/bulk/purge", json=body).status_code == 200
    tab = open_tab()
    page = open_dashboard(tab, web)
    page.click("#audit-open")
    rows = page.locator("#audit-rows tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("purge")
    expect(rows.nth(0)).to_contain_text(XSS)  # shown as text: no image, no alert
    expect(rows.nth(1)).to_contain_text("retry")
    expect(rows.nth(1)).to_contain_text(failed)
    expect(rows.nth(1)).to_contain_text("anonymous")
    expect(rows.nth(1)).to_contain_text("127.0.0.1")
    assert page.locator("#audit-rows img").count() == 0

    # An action from the page shows when the view is refreshed.
    page.click("#audit-close")
    page.click("#bulk-retry")
    expect(page.locator("#bulk-confirm")).to_be_enabled()
    page.click("#bulk-confirm")
    expect(page.locator("#toast")).to_contain_text("Retried")
    page.click("#audit-open")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("bulk retry")


def test_behind_a_login_the_controls_send_the_csrf_token_and_name_the_session(
    start_instance, open_tab, tmp_path
):
    secured = start_instance("web-1", db=tmp_path / "history.db", token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    failed = secured.enqueue("explode", "behind a login")
    finished(secured, failed, **auth)
    tab = open_tab(base_url=secured.url)
    page = tab.page
    page.goto("/tasks/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # The cookie alone is refused; the page's own request carries the CSRF token.
    assert page.request.post("/tasks/bulk/retry", data={"dry_run": True}).status == 403
    page.click("#bulk-retry")
    expect(page.locator("#bulk-count")).to_contain_text("1 failed or interrupted task match")
    page.click("#bulk-confirm")
    expect(page.locator("#toast")).to_contain_text("Retried 1 task")
    page.click("#audit-open")
    rows = page.locator("#audit-rows tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("bulk retry")
    expect(rows.nth(1)).to_contain_text("login")
    actors = {rows.nth(n).locator("td").nth(3).inner_text() for n in range(2)}
    assert len(actors) == 1 and actors.pop().startswith("session ")
    assert TOKEN not in page.locator("#audit").inner_text()
