"""The CLI's small pure parts: tables, bytes in JSON, times, the progress bar."""

from __future__ import annotations

import base64
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailrace.broker.cli.output import bytes_field, human_size, table
from tailrace.broker.cli.progress import Progress
from tailrace.broker.cli.times import parse_time_ms


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.binary(max_size=64), st.text(max_size=32).map(str.encode)))
def test_bytes_field_gives_back_the_exact_bytes(value):
    field = bytes_field("value", value)
    assert set(field) == {"value", "value_encoding"}
    if value is None:
        assert field == {"value": None, "value_encoding": None}
    elif field["value_encoding"] == "utf-8":
        assert field["value"].encode("utf-8") == value
    else:
        assert field["value_encoding"] == "base64"
        assert base64.b64decode(field["value"]) == value
        with pytest.raises(UnicodeDecodeError):
            value.decode("utf-8")


def test_table_aligns_text_left_and_numbers_right():
    text = table(["NAME", "COUNT"], [("a", 5), ("longer", 1234), ("x", None)], [False, True])
    assert text.splitlines() == [
        "NAME    COUNT",
        "a           5",
        "longer   1234",
        "x           -",
    ]


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB")],
)
def test_human_size(n, shown):
    assert human_size(n) == shown


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-25T10:00:00Z", 1795600800000),
        ("2026-11-25T10:00:00", 1795600800000),  # no zone: UTC
        ("2026-11-25T11:00:00+01:00", 1795600800000),
        ("2026-11-25T10:00:00.250Z", 1795600800250),
        ("2026-11-25", 1795564800000),
        ("1795600800000", 1795600800000),
    ],
)
def test_times_in_every_documented_form(text, ms):
    assert parse_time_ms(text) == ms


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "", "1969-12-31T00:00:00Z"])
def test_times_that_are_not(text):
    with pytest.raises(ValueError, match=r"2026-11-25T10:00:00Z|before 1970"):
        parse_time_ms(text)


def test_progress_draws_nothing_when_disabled():
    out = io.StringIO()  # not a terminal
    p = Progress(out, total_bytes=100)
    assert not p.enabled
    p._next_draw = 0
    p.update(10, 50)
    p.close()
    assert out.getvalue() == ""


def test_progress_draws_one_line_with_rate_and_erases_it():
    out = io.StringIO()
    p = Progress(out, total_bytes=200, enabled=True)
    p._next_draw = 0  # due now
    p.update(10, 100)
    drawn = out.getvalue()
    assert drawn.startswith("\r[")
    assert " 50%" in drawn
    assert "10 records" in drawn
    assert "records/s" in drawn
    assert "\n" not in drawn
    p.close()
    assert out.getvalue().endswith("\r\x1b[K")
    assert p.render(3000, None, 2.0) == "3,000 records  1,500 records/s"
