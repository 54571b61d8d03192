"""Backend URLs: the registry picks the class; no message or log line ever shows a password."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskflow import TaskManager
from taskflow.backends import RedisBackend, backend_from_url
from taskflow.backends.urls import mask_url

SECRET = "hunter2"

#: URLs with a password that every backend or the registry refuses, each for its own reason.
REFUSED = [
    f"mysql://u:{SECRET}@h/db",  # unknown scheme
    f"postgres://u:{SECRET}@h:port/db",  # bad port
    f"postgresql://u:{SECRET}@h/db?pool_size=many",  # bad option
    f"u:{SECRET}@h/db",  # no scheme
    f"sqlite://u:{SECRET}@h/tasks.db",  # a host in a SQLite URL
    f"sqlite:u:{SECRET}@h",  # not sqlite:///
    f"redis://u:{SECRET}@h:port/0",  # bad port
    f"redis://:{SECRET}@h:6379/zero",  # bad database
    f"redis://u:{SECRET}@[::1/0",  # not even a URL urllib can split
    f"redis://h:6379/0?password={SECRET}&socket_timeout=soon",  # bad option
    f"rediss://h:6379/x?sentinel_password={SECRET}",
    f"redis://u:p@ss/{SECRET}@h/zero",  # an unescaped "/" in the password
]


@pytest.mark.parametrize("url", REFUSED)
def test_url_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(ValueError, match=r"\*\*\*") as caught:
        backend_from_url(url)
    assert SECRET not in str(caught.value)
    with pytest.raises(ValueError, match=r"\*\*\*") as through_manager:
        TaskManager(snapshot_backend=url)
    assert SECRET not in str(through_manager.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgres://u:{SECRET}@h/db", "postgres://u:***@h/db"),
        (f"redis://:{SECRET}@h:6379/0", "redis://:***@h:6379/0"),
        (f"redis://u:a@b:{SECRET}@h/0", "redis://u:***@h/0"),
        (f"u:{SECRET}@h", "u:***@h"),
        (f"unix:///s.sock?db=1&password={SECRET}", "unix:///s.sock?db=1&password=***"),
        (
            f"redis://h/0?ssl_password={SECRET}&Token={SECRET}",
            "redis://h/0?ssl_password=***&Token=***",
        ),
        # Nothing to hide: shown as given.
        ("redis://user@h:6379/0", "redis://user@h:6379/0"),
        ("sqlite:///data/a@b.db", "sqlite:///data/a@b.db"),
        ("redis://h:6379/0?ssl_keyfile=/k.pem", "redis://h:6379/0?ssl_keyfile=/k.pem"),
        (None, "None"),
    ],
)
def test_mask_url(url: object, shown: str) -> None:
    assert mask_url(url) == shown


@given(st.text(min_size=1), st.sampled_from(["redis", "rediss", "postgres", "sqlite", "x"]))
def test_no_password_survives_masking(password: str, scheme: str) -> None:
    escaped = quote(password, safe="")
    # Escaped as a valid URL holds it, or pasted raw (with "@", "/", "#", newlines...).
    for form in (escaped, password):
        assert mask_url(f"{scheme}://user:{form}@host:6379/0") == f"{scheme}://user:***@host:6379/0"
    assert mask_url(f"{scheme}://host/0?password={escaped}") == f"{scheme}://host/0?password=***"
    assert mask_url(f"user:{escaped}@host") == "user:***@host"


def test_the_redis_log_line_masks_the_password(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    caplog.set_level(logging.INFO, logger="taskflow")
    backend = RedisBackend(f"redis://u:{SECRET}@127.0.0.1:1/0")

    async def open_and_close() -> None:
        await backend.open()  # builds the pool and logs where the history is, no connection
        await backend.close()

    asyncio.run(open_and_close())
    assert "***" in caplog.text
    assert SECRET not in caplog.text
