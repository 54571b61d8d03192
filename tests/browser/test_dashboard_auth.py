"""With an admin token, the browser must log in: pages, API and stream refuse it until then."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TOKEN = "browser-test-admin-token"


@pytest.fixture
def secured(start_instance, tmp_path):
    return start_instance("web-1", db=tmp_path / "history.db", token=TOKEN)


def test_everything_refuses_a_stranger_until_the_login_form_is_used(secured, open_tab):
    failed = secured.enqueue("explode", "needs a retry")
    secured.wait_finished(failed, Authorization=f"Bearer {TOKEN}")
    tab = open_tab(base_url=secured.url)
    page = tab.page

    # The dashboard sends a stranger to the login form; the API and the stream answer 401.
    page.goto("/tasks/dashboard")
    expect(page).to_have_url(f"{secured.url}/tasks/login")
    for path in ("/tasks", "/tasks/metrics", f"/tasks/{failed}", "/tasks/stream"):
        response = page.request.get(path)
        assert response.status == 401, path
    assert page.request.post(f"/tasks/{failed}/retry").status == 401
    state = page.evaluate(
        """() => new Promise((resolve) => {
            const source = new EventSource("/tasks/stream");
            source.onerror = () => { resolve(source.readyState); source.close(); };
            source.onopen = () => { resolve("open"); source.close(); };
        })"""
    )
    assert state == 2  # EventSource.CLOSED: refused, not retried

    page.fill("#token", "a wrong guess")
    page.click("button[type=submit]")
    expect(page.locator(".login-error")).to_have_text("That token is not right.")
    assert page.context.cookies() == []

    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{secured.url}/tasks/dashboard")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator(f'#rows tr[data-id="{failed}"]')).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["taskflow_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    assert TOKEN not in session["value"]
    assert cookies["taskflow_csrf"]["httpOnly"] is False

    # The cookie alone cannot change anything: the page's own retry sends the CSRF token.
    assert page.request.post(f"/tasks/{failed}/retry").status == 403
    page.locator(f'#rows tr[data-id="{failed}"]').click()
    page.click("#retry")
    expect(page.locator("#toast")).to_contain_text("Retry started as task")

    page.click("#logout")
    expect(page).to_have_url(f"{secured.url}/tasks/login")
    assert page.request.get("/tasks").status == 401
    page.goto("/tasks/dashboard")
    expect(page).to_have_url(f"{secured.url}/tasks/login")
    # The session itself ended, not only the browser's copy: the old cookie put back is refused.
    page.context.add_cookies([session])
    assert page.request.get("/tasks").status == 401
    page.goto("/tasks/dashboard")
    expect(page).to_have_url(f"{secured.url}/tasks/login")


def test_health_endpoints_stay_open_with_a_token(secured, open_tab):
    tab = open_tab(base_url=secured.url)
    assert tab.page.request.get("/healthz").status == 200
    assert tab.page.request.get("/readyz").status == 200
