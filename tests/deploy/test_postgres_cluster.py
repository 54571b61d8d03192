"""The local runner's PostgreSQL URLs (deploy/postgres_cluster.py); its clusters run for real in
tests/integration/test_runner*.py and test_loadtest.py."""

from __future__ import annotations

import pytest

from deploy import postgres_cluster
from tests.conftest import free_port


def test_its_own_cluster_keeps_taskflows_options_only():
    url = "postgresql://app:secret@db.example:6543/prod?schema=kit&sslmode=require&pool_size=2"
    assert postgres_cluster.own_url(url, 5555) == (
        "postgresql://postgres@127.0.0.1:5555/postgres?schema=kit&pool_size=2"
    )


def test_with_schema_replaces_the_schema_and_keeps_the_rest():
    url = "postgresql://app:secret@db.example/prod?schema=kit&sslmode=require"
    assert postgres_cluster.with_schema(url, "loadtest_x") == (
        "postgresql://app:secret@db.example/prod?sslmode=require&schema=loadtest_x"
    )
    assert postgres_cluster.with_schema(postgres_cluster.DEFAULT_URL, "s").endswith("?schema=s")


def test_the_default_is_the_machines_server_in_a_schema_of_the_runners_own(monkeypatch):
    monkeypatch.delenv("POSTGRES_URL", raising=False)
    assert postgres_cluster.url_from_env() == postgres_cluster.DEFAULT_URL
    assert postgres_cluster.DEFAULT_URL.endswith("?schema=taskflow_kit")
    monkeypatch.setenv("POSTGRES_URL", "postgresql://h/db")
    assert postgres_cluster.url_from_env() == "postgresql://h/db"


def test_nothing_listening_does_not_answer():
    assert postgres_cluster.answers(f"postgresql://postgres@127.0.0.1:{free_port()}/x") is False


def test_drop_schema_refuses_what_is_not_a_plain_name():
    with pytest.raises(ValueError, match="not a plain schema name"):
        postgres_cluster.drop_schema("postgresql://h/db?schema=a;DROP TABLE x")
