"""Cursors: what the server issues decodes back; anything else is an InvalidQuery, never a crash."""

from __future__ import annotations

import base64
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskflow.query import (
    MAX_CURSOR_CHARS,
    MAX_SORT_TS,
    MIN_SORT_TS,
    Cursor,
    InvalidQuery,
    TaskQuery,
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_of(value: object) -> str:
    return b64(json.dumps(value).encode())


@given(
    st.floats(min_value=MIN_SORT_TS, max_value=MAX_SORT_TS, allow_nan=False),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=64),
)
def test_every_issued_cursor_decodes_to_itself(sort_ts, task_id):
    cursor = Cursor(sort_ts, task_id)
    assert Cursor.decode(cursor.encode()) == cursor


HOSTILE = {
    "NaN": cursor_of([math.nan, "x"]),
    "infinity": cursor_of([math.inf, "x"]),
    "minus infinity": cursor_of([-math.inf, "x"]),
    "overflowing float": b64(b'[1e999, "x"]'),
    "the string nan": cursor_of(["nan", "x"]),
    "a boolean": cursor_of([True, "x"]),
    "a huge integer": b64(b"[" + b"9" * 700 + b', "x"]'),
    "past year 9999": cursor_of([MAX_SORT_TS + 1, "x"]),
    "before year 1": cursor_of([MIN_SORT_TS - 1, "x"]),
    "deep nesting": b64(b"[" * 700 + b"]" * 700),
    "deep nesting, cut": b64(b"[" * 760),
    "a lone surrogate": b64(b'[1.0, "\\ud800"]'),
    "a number as the id": cursor_of([1.0, 5]),
    "an empty id": cursor_of([1.0, ""]),
    "a long id": cursor_of([1.0, "x" * 300]),
    "three items": cursor_of([1.0, "x", "y"]),
    "an object": cursor_of({"sort_ts": 1.0, "task_id": "x"}),
    "not UTF-8": b64(b'[1.0, "\xff"]'),
    "UTF-16": b64('[1.0, "x"]'.encode("utf-16")),
    "not base64": "%%%",
    "base64 with junk between": cursor_of([1.0, "x"])[:4] + "!!" + cursor_of([1.0, "x"])[4:],
    "bad padding": "a",
    "non-ASCII text": "é" * 8,
    "a lone surrogate in the text": "\ud800abc",
    "too long": "A" * (MAX_CURSOR_CHARS + 4),
    "empty": "",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_anything_but_an_issued_cursor_is_an_invalid_query(text):
    with pytest.raises(InvalidQuery, match="cursor") as raised:
        Cursor.decode(text)
    assert raised.value.field == "cursor"
    assert len(str(raised.value)) < 200  # a client's megabytes are not echoed back
    with pytest.raises(InvalidQuery):
        TaskQuery.build(cursor=text)


@given(st.text(max_size=2 * MAX_CURSOR_CHARS))
def test_any_text_decodes_or_is_an_invalid_query(text):
    try:
        cursor = Cursor.decode(text)
    except InvalidQuery:
        return
    assert math.isfinite(cursor.sort_ts) and MIN_SORT_TS <= cursor.sort_ts <= MAX_SORT_TS
    cursor.task_id.encode("utf-8")


def test_other_invalid_filters_name_their_field():
    with pytest.raises(InvalidQuery) as status:
        TaskQuery.build(status="x" * 10_000)
    assert status.value.field == "status" and len(str(status.value)) < 200
    with pytest.raises(InvalidQuery) as limit:
        TaskQuery.build(limit=0)
    assert limit.value.field == "limit"
