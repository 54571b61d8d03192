"""`nginx -t` on the kit's real config, laid out exactly as the local runner lays it out."""

from __future__ import annotations

import subprocess

import pytest

from deploy import nginx_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(nginx_config.find_nginx() is None, reason="nginx not installed"),
]


def nginx_test(prefix):
    binary = nginx_config.find_nginx()
    assert binary is not None
    command = nginx_config.command(binary, prefix, test=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_nginx_accepts_the_rendered_config(tmp_path):
    nginx_config.render(tmp_path, port=18080, servers=["127.0.0.1:18001", "127.0.0.1:18002"])
    result = nginx_test(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    # Everything nginx needs to write went into the prefix, nothing into /var/lib/nginx or /run.
    assert (tmp_path / "proxy_temp").is_dir() and (tmp_path / "client_body_temp").is_dir()


def test_nginx_test_catches_a_broken_config(tmp_path):
    # Proof that the check above can fail: the same layout with a bad upstream list is refused.
    nginx_config.render(tmp_path, port=18080, servers=["127.0.0.1:18001"])
    with (tmp_path / "conf.d" / "upstream.conf").open("a") as upstream:
        upstream.write("server 127.0.0.1:18002 max_fails=often;\n")
    result = nginx_test(tmp_path)
    assert result.returncode != 0
    assert "max_fails" in result.stderr
