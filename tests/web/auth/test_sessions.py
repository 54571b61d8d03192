"""Session cookies: signed with a scrypt-derived key, strictly parsed, never a crash."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskflow.web.auth import sessions
from taskflow.web.auth.sessions import (
    KDF_LABEL,
    SESSION_MAX_AGE,
    Session,
    SessionSigner,
    derive_key,
)

TOKEN = "a weak token"


SIGNER = SessionSigner(TOKEN)  # once: the key derivation is slow on purpose


def test_an_issued_cookie_parses_back_with_a_random_id():
    first, second = SIGNER.issue(), SIGNER.issue()
    one, two = SIGNER.parse(first), SIGNER.parse(second)
    assert isinstance(one, Session) and isinstance(two, Session)
    assert one.session_id != two.session_id  # what a logout revokes, one per login
    assert one.value == first
    assert abs(one.expires - (time.time() + SESSION_MAX_AGE)) < 5
    assert TOKEN not in first


def test_the_signing_key_is_scrypt_of_the_token_with_a_label():
    """A captured cookie lets an attacker test guesses of the token offline: each guess must
    cost a scrypt (N=2^15, r=8: 32 MiB), not one HMAC keyed by the token itself."""
    assert sessions.KDF_N * sessions.KDF_R * 128 >= 32 * 1024 * 1024
    key = hashlib.scrypt(
        TOKEN.encode(),
        salt=KDF_LABEL,
        n=sessions.KDF_N,
        r=sessions.KDF_R,
        p=sessions.KDF_P,
        maxmem=sessions.KDF_MAXMEM,
        dklen=32,
    )
    assert derive_key(TOKEN) == key and KDF_LABEL == b"taskflow-kit session v1"
    cookie = SIGNER.issue()
    body, _, signature = cookie.rpartition(".")
    expected = hmac.new(key, f"taskflow-kit|session|{body}".encode(), hashlib.sha256).hexdigest()
    assert signature == expected
    # Keyed by the token directly (as before): refused.
    raw = hmac.new(TOKEN.encode(), f"taskflow-kit|session|{body}".encode(), hashlib.sha256)
    assert SIGNER.parse(f"{body}.{raw.hexdigest()}") is None
    csrf = hmac.new(key, f"taskflow-kit|csrf|{cookie}".encode(), hashlib.sha256).hexdigest()
    assert SIGNER.csrf_token(cookie) == csrf


def test_the_key_is_derived_once_per_signer(monkeypatch):
    calls = []
    real = sessions.derive_key
    monkeypatch.setattr(sessions, "derive_key", lambda token: calls.append(token) or real(token))
    signer = SessionSigner(TOKEN)
    for _ in range(5):
        assert signer.parse(signer.issue()) is not None
    assert calls == [TOKEN]


HOSTILE = {
    "superscript two": "\xb2.x",
    "superscript digits": "\xb2\xb3\xb9.abcdefghijklmnopqrstuv." + "0" * 64,
    "Arabic-Indic digits": "\u0661\u0662\u0663.abcdefghijklmnopqrstuv." + "0" * 64,
    "4,301 digits": "1" * 4301 + ".x",
    "4,301 digits, well formed": "1" * 4301 + ".abcdefghijklmnopqrstuv." + "0" * 64,
    "the old format": "1700000000." + "0" * 64,
    "a lone surrogate": "\ud800.x.y",
    "NUL": "\x00",
    "dots only": "..",
    "a megabyte": "9" * 1_000_000,
    "negative": "-5.abcdefghijklmnopqrstuv." + "0" * 64,
    "upper-case hex": "1700000000.abcdefghijklmnopqrstuv." + "A" * 64,
}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_cookie_values_are_no_session(value):
    assert SIGNER.parse(value) is None


@given(st.text(max_size=300))
def test_any_text_is_a_session_or_none(text):
    assert SIGNER.parse(text) is None  # a random text never carries a valid signature


@given(st.data())
def test_changing_any_character_of_a_cookie_breaks_it(data):
    cookie = SIGNER.issue()
    at = data.draw(st.integers(0, len(cookie) - 1))
    other = data.draw(st.characters().filter(lambda c: c != cookie[at]))
    assert SIGNER.parse(cookie[:at] + other + cookie[at + 1 :]) is None


def test_expired_and_future_sessions_are_refused():
    now = time.time()
    assert SIGNER.parse(SIGNER.issue(now - SESSION_MAX_AGE - 1)) is None
    assert SIGNER.parse(SIGNER.issue(now + 3600)) is None
    assert SIGNER.parse(SIGNER.issue(now - SESSION_MAX_AGE + 60)) is not None


def test_another_token_signs_other_sessions():
    assert SessionSigner("another token").parse(SIGNER.issue()) is None
