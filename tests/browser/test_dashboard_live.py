"""The dashboard in a real browser: live updates across instances, detail, filters, retry, XSS."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, Instance

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


def open_dashboard(tab, instance: Instance, path: str = "/tasks/dashboard"):
    page = tab.page
    page.goto(f"{instance.url}{path}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


def row(page, task_id: str):
    return page.locator(f'#rows tr[data-id="{task_id}"]')


@pytest.fixture
def cluster(start_instance, tmp_path: Path) -> tuple[Instance, Instance]:
    """Two instances sharing one SQLite history file, as on one host behind a load balancer."""
    db = tmp_path / "history.db"
    return start_instance("web-1", db=db), start_instance("web-2", db=db)


def test_the_dashboard_loads_with_counts_functions_and_rows(cluster, open_tab):
    web1, _ = cluster
    ids = [web1.enqueue("send_welcome_email", f"user{i}@example.com") for i in range(3)]
    failed = web1.enqueue("charge_card", 2500)
    for task_id in [*ids, failed]:
        web1.wait_finished(task_id)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    expect(page.locator("#conn-text")).to_have_text("Live · web-1")
    expect(page.locator("#rows tr[data-id]")).to_have_count(4)
    expect(page.locator("#count-total")).to_have_text("4")
    expect(page.locator("#count-success")).to_have_text("3")
    expect(page.locator("#count-failed")).to_have_text("1")
    charge = page.locator("#func-rows tr", has_text="charge_card")
    expect(charge).to_contain_text("100%")  # its one task failed
    expect(page.locator("#func-rows tr", has_text="send_welcome_email")).to_contain_text("0%")
    expect(row(page, failed)).to_contain_text("ValueError: card declined")


def test_a_task_enqueued_through_another_instance_appears_within_a_second(cluster, open_tab):
    web1, web2 = cluster
    tab = open_tab()
    page = open_dashboard(tab, web1)
    for attempt in range(3):
        started = time.monotonic()
        task_id = web2.enqueue("resize_image", f"uploads/{attempt}.jpg")
        row(page, task_id).wait_for(state="attached", timeout=5_000)
        took = time.monotonic() - started
        assert took < 1.0, f"the other instance's task took {took:.2f}s to appear"
        expect(row(page, task_id)).to_contain_text("web-2")
        expect(row(page, task_id)).to_contain_text("Succeeded")
    expect(page.locator("#count-success")).to_have_text("3", timeout=5_000)  # metrics deltas


def test_local_tasks_show_their_whole_lifecycle_live(cluster, open_tab):
    web1, _ = cluster
    tab = open_tab()
    page = open_dashboard(tab, web1)
    task_id = web1.enqueue("generate_report", "quarterly", seconds=1.5)
    expect(row(page, task_id)).to_contain_text("Running", timeout=2_000)
    expect(row(page, task_id)).to_contain_text("Succeeded", timeout=5_000)
    expect(row(page, task_id)).to_contain_text("1.5")


def test_the_detail_panel_shows_arguments_timings_and_the_traceback(cluster, open_tab):
    web1, _ = cluster
    task_id = web1.enqueue("charge_card", 2500, currency="USD")
    web1.wait_finished(task_id)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    row(page, task_id).click()
    detail = page.locator("#detail")
    expect(detail).to_be_visible()
    expect(detail.locator(".task-id")).to_have_text(task_id)
    expect(detail.locator("pre.args").first).to_have_text("[2500]")
    expect(detail.locator("pre.args").nth(1)).to_have_text('{"currency":"USD"}')
    traceback = detail.locator("pre.traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("ValueError: card declined: 2500 USD is over the limit")
    expect(detail.locator("pre.error")).to_have_text(
        "ValueError: card declined: 2500 USD is over the limit"
    )
    facts = detail.locator("dl.facts")
    expect(facts).to_contain_text("web-1")
    expect(facts).to_contain_text("Attempts3")  # retries=2: three attempts
    expect(page.locator("#retry")).to_be_visible()
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()


def test_filters_narrow_the_list(cluster, open_tab):
    web1, web2 = cluster
    mails = [web1.enqueue("send_welcome_email", f"u{i}@example.com") for i in range(3)]
    declined = [web2.enqueue("charge_card", 5000 + i) for i in range(2)]
    images = [web1.enqueue("resize_image", f"img/{i}.png") for i in range(2)]
    for task_id in mails + images:
        web1.wait_finished(task_id)
    for task_id in declined:
        web2.wait_finished(task_id)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    rows = page.locator("#rows tr[data-id]")
    expect(rows).to_have_count(7)

    page.select_option("#f-status", "failed")
    expect(rows).to_have_count(2)
    for task_id in declined:
        expect(row(page, task_id)).to_contain_text("Failed")

    page.click("#f-clear")
    expect(rows).to_have_count(7)
    page.select_option("#f-func", "resize_image")
    expect(rows).to_have_count(2)
    for task_id in images:
        expect(row(page, task_id)).to_be_visible()

    page.click("#f-clear")
    page.fill("#f-instance", "web-2")
    expect(rows).to_have_count(2)
    expect(page.locator("#rows")).not_to_contain_text("web-1")

    page.click("#f-clear")
    page.fill("#f-id", mails[1][-10:])  # the end the table shows
    expect(rows).to_have_count(1)
    expect(row(page, mails[1])).to_be_visible()


def test_retry_creates_a_new_task(cluster, open_tab):
    web1, _ = cluster
    failed = web1.enqueue("explode", "the printer is on fire")
    web1.wait_finished(failed)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    row(page, failed).click()
    expect(page.locator("#retry")).to_be_visible()
    page.click("#retry")
    expect(page.locator("#toast")).to_contain_text("Retry started as task")
    retry_of = page.locator("#detail dl.facts button[data-open]")
    expect(retry_of).to_have_attribute("data-open", failed)  # the panel shows the new task
    new_id = page.locator("#detail .task-id").inner_text()
    assert new_id != failed
    expect(row(page, new_id)).to_be_visible()
    expect(row(page, new_id).locator(".tag")).to_have_text("retry")
    assert web1.wait_finished(new_id)["retry_of"] == failed


def test_an_html_payload_in_arguments_and_errors_stays_text(cluster, open_tab):
    web1, web2 = cluster
    in_args = web1.enqueue("send_welcome_email", XSS)
    in_error = web2.enqueue("explode", XSS)
    web1.wait_finished(in_args)
    web2.wait_finished(in_error)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    expect(row(page, in_error).locator("td.err")).to_have_text(f"RuntimeError: {XSS}")
    row(page, in_args).click()
    expect(page.locator("#detail pre.args").first).to_have_text(f'["{XSS}"]')
    page.get_by_text(XSS).first.wait_for()
    row(page, in_error).click()
    expect(page.locator("#detail pre.error")).to_have_text(f"RuntimeError: {XSS}")
    page.wait_for_timeout(500)  # time for any injected handler to have fired
    assert page.locator("img:not(.logo)").count() == 0  # no element was made from the payload
    assert tab.dialogs == []


def test_stays_responsive_with_100000_records_in_history(start_instance, open_tab, tmp_path):
    from tests.browser.seed import seed_history

    db = tmp_path / "big.db"
    seed_history(db, 100_000)
    web1 = start_instance("web-1", db=db)
    tab = open_tab()
    page = tab.page
    started = time.monotonic()
    page.goto(f"{web1.url}/tasks/dashboard")
    rows = page.locator("#rows tr[data-id]")
    expect(rows).to_have_count(50)
    expect(page.locator("#count-total")).to_have_text("100,000")
    assert time.monotonic() - started < 3.0
    for _ in range(3):
        first = rows.first.get_attribute("data-id")
        began = time.monotonic()
        page.click("#older")
        expect(rows.first).not_to_have_attribute("data-id", first or "")
        expect(rows).to_have_count(50)
        assert time.monotonic() - began < 1.0
    page.click("#newest")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    task_id = web1.enqueue("resize_image", "fresh.png")
    expect(rows.first).to_have_attribute("data-id", task_id)  # patched in at the top
    expect(rows).to_have_count(50)  # and the page stays one page
    began = time.monotonic()
    page.select_option("#f-status", "failed")
    expect(rows.first).to_contain_text("Failed")
    expect(rows).to_have_count(50)
    assert time.monotonic() - began < 1.0
    page.select_option("#f-status", "")
    page.fill("#f-instance", "web-3")
    expect(rows).to_have_count(50)
    expect(page.locator("#rows")).not_to_contain_text("web-1")


def test_screenshot_of_the_dashboard_with_real_data(cluster, open_tab):
    web1, web2 = cluster
    running = web1.enqueue("generate_report", "monthly-revenue", seconds=60)
    doomed = web2.enqueue("generate_report", "yearly-audit", seconds=60)
    calls = [
        ("send_welcome_email", ("ana@example.com",)),
        ("charge_card", (49,)),
        ("resize_image", ("uploads/0001.jpg",)),
        ("send_welcome_email", ("bo@example.com",)),
        ("charge_card", (1200,)),
        ("generate_report", ("weekly-signups",)),
        ("resize_image", ("uploads/0002.jpg",)),
        ("send_welcome_email", ("chen@example.com",)),
        ("charge_card", (990,)),
        ("explode", ("connection to smtp.internal refused",)),
        ("resize_image", ("uploads/0003.jpg",)),
        ("send_welcome_email", ("dara@example.com",)),
        ("charge_card", (2500,)),
        ("resize_image", ("uploads/0004.jpg",)),
        ("send_welcome_email", ("eli@example.com",)),
    ]
    ids = []
    for i, (func, args) in enumerate(calls * 2):
        instance = (web1, web2)[i % 2]
        ids.append((instance, instance.enqueue(func, *args)))
    for instance, task_id in ids:
        instance.wait_finished(task_id)
    web2.server.stop()  # its long report is interrupted by the shutdown, and flushed
    web1.wait_finished(doomed)
    tab = open_tab()
    page = open_dashboard(tab, web1)
    expect(row(page, running)).to_contain_text("Running")
    expect(row(page, doomed)).to_contain_text("Interrupted")
    expect(page.locator("#count-interrupted")).to_have_text("1")
    page.wait_for_timeout(300)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    failed_row = page.locator("#rows tr[data-id]", has_text="card declined").first
    failed_row.click()
    expect(page.locator("#detail pre.traceback")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"))
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 20_000
