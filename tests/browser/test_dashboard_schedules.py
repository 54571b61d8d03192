"""The Schedules view: a schedule with its runs, paused and resumed from the page (with the
admin token, so through the session and its CSRF token), for every instance on the file."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TOKEN = "browser-test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def schedule(url: str) -> dict[str, object]:
    (item,) = httpx.get(f"{url}/tasks/schedules", headers=AUTH).json()["items"]
    return item


def test_pause_and_resume_from_the_schedules_view(start_instance, open_tab, tmp_path):
    db = tmp_path / "history.db"
    web1 = start_instance("web-1", db=db, token=TOKEN, schedule=True)
    web2 = start_instance("web-2", db=db, token=TOKEN, schedule=True)
    tab = open_tab(base_url=web1.url)
    page = tab.page
    page.goto("/tasks/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{web1.url}/tasks/dashboard")

    panel = page.locator("#schedules")
    expect(panel).to_be_visible()
    row = panel.locator('tr[data-schedule="heartbeat"]')
    expect(row).to_contain_text("every 0:00:01")
    expect(row.locator(".badge")).to_have_text("Succeeded", timeout=15_000)

    row.locator("button[data-action=pause]").click()
    expect(row.locator("button[data-action=resume]")).to_be_visible()
    expect(row.locator(".next-run")).to_have_text("paused")
    assert schedule(web2.url)["paused"] is True  # in the backend: every instance sees it
    last = schedule(web2.url)["last_run"]
    time.sleep(2.5)
    assert schedule(web1.url)["last_run"] == last  # no instance fired meanwhile

    row.locator("button[data-action=resume]").click()
    expect(row.locator("button[data-action=pause]")).to_be_visible()
    assert schedule(web2.url)["paused"] is False
    deadline = time.monotonic() + 5
    while schedule(web2.url)["last_run"] == last:
        assert time.monotonic() < deadline, "no run after resume"
        time.sleep(0.2)

    # The scheduled status is one of the page's filters.
    expect(page.locator('#f-status option[value="scheduled"]')).to_have_count(1)
    expect(page.locator("#count-scheduled")).to_have_text("0")
