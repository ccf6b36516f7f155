"""The console's pure parts: how record bytes are shown, rates and
percentiles from metric samples, sessions, password checks, configuration."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from tailrace.broker.config import ConfigError, load_config
from tailrace.broker.console import rates
from tailrace.broker.console.rates import RateSeries, quantile
from tailrace.broker.console.render import SHOWN_BYTES, show
from tailrace.broker.console.sessions import (
    IDLE_S,
    MAX_SESSIONS,
    Sessions,
    check_password,
    cookie_header,
)
from tailrace.broker.security.live_users import LiveUsers
from tailrace.broker.security.users import add_user


def test_text_keeps_markup_as_characters_and_escapes_what_is_not_text():
    assert show(b"<script>alert(1)</script>").text == "<script>alert(1)</script>"
    shown = show(b"ok \xff\xfe \x00\x1b[31m\ttab\nline \xc2\x85")
    assert shown.text == "ok \\xff\\xfe \\x00\\x1b[31m\ttab\nline \\x85"
    assert show(None).text == "(null)"
    assert show("é".encode()).text == "é"


def test_long_values_are_cut_and_say_so():
    data = b"x" * (SHOWN_BYTES + 1)
    shown = show(data)
    assert (len(shown.text), shown.size, shown.truncated) == (SHOWN_BYTES, SHOWN_BYTES + 1, True)
    assert show(b"x" * SHOWN_BYTES).truncated is False
    # a multi-byte character cut in half is escaped, not an error
    assert show("é".encode() * SHOWN_BYTES).text.endswith("é")
    assert show(b"a" + "é".encode() * SHOWN_BYTES).text.endswith("\\xc3")


def test_json_is_pretty_when_it_parses_else_text():
    shown = show(b'{"a": [1, "<b>"]}', "json")
    assert shown.format == "json"
    assert shown.text == '{\n  "a": [\n    1,\n    "<b>"\n  ]\n}'
    assert show(b"{not json", "json").format == "text"
    assert show(b'{"a": 1}' + b" " * SHOWN_BYTES, "json").format == "text"  # cut: not parsed


def test_hex_dump():
    shown = show(b"<script>\x00\xff", "hex")
    assert shown.text == "00000000  3c 73 63 72 69 70 74 3e 00 ff" + " " * 18 + "  <script>.."


def test_quantile_interpolates_inside_buckets():
    before = [(0.001, 0.0), (0.01, 0.0), (0.1, 0.0), (math.inf, 0.0)]
    after = [(0.001, 10.0), (0.01, 60.0), (0.1, 100.0), (math.inf, 100.0)]
    assert quantile(0.1, before, after) == pytest.approx(0.001)
    assert quantile(0.5, before, after) == pytest.approx(0.001 + 0.009 * 40 / 50)
    assert quantile(0.99, before, after) == pytest.approx(0.01 + 0.09 * 39 / 40)
    assert math.isnan(quantile(0.5, after, after))  # no observations in between
    beyond = [(0.001, 0.0), (0.01, 0.0), (0.1, 0.0), (math.inf, 5.0)]
    assert quantile(0.5, before, beyond) == 0.1  # above the last bound: the bound


def test_rate_series_samples_at_most_once_a_second():
    registry = CollectorRegistry()
    requests = Counter("tailrace_requests_total", "r", ["api"], registry=registry)
    seconds = Histogram(
        "tailrace_request_duration_seconds", "s", ["api"], registry=registry, buckets=(0.01, 0.1)
    )
    received = Counter("tailrace_received_bytes_total", "b", registry=registry)
    now = [100.0]
    series = RateSeries(registry, clock=lambda: now[0], wall=lambda: 1.0)
    assert series.poll() == []  # the first sample has nothing to compare with
    requests.labels("produce").inc(20)
    requests.labels("fetch").inc(4)
    for _ in range(20):
        seconds.labels("produce").observe(0.005)
    received.inc(2048)
    now[0] += 0.5
    assert series.poll() == []  # too soon: no new sample
    now[0] += 1.5
    (point,) = series.poll()
    assert point["produce_rps"] == 10.0  # 20 in 2 s
    assert point["fetch_rps"] == 2.0
    assert point["requests"] == 12.0
    assert point["bytes_in"] == 1024.0
    assert point["produce_p50_ms"] == pytest.approx(5.0)
    assert point["fetch_p50_ms"] is None  # no fetch was timed
    assert point["t"] == 1000
    for _ in range(rates.KEEP + 5):
        now[0] += 1
        series.poll()
    assert len(series.points) == rates.KEEP


def test_sessions_expire_and_a_flood_evicts_anonymous_ones_first():
    now = [0.0]
    sessions = Sessions(clock=lambda: now[0])
    alice = sessions.start("User:alice", user="alice")
    for _ in range(MAX_SESSIONS + 10):
        sessions.start("")
    assert len(sessions) == MAX_SESSIONS
    assert sessions.get(alice.sid) is alice  # the logged-in session survived
    assert alice.csrf_ok(alice.csrf)
    assert not alice.csrf_ok(alice.csrf + "x")
    assert not alice.csrf_ok(None)
    now[0] += IDLE_S + 1
    assert sessions.get(alice.sid) is None
    assert sessions.get("") is None


def test_cookie_attributes():
    assert cookie_header("abc") == "tailrace_console=abc; Path=/; HttpOnly; SameSite=Strict; Secure"
    assert cookie_header("", clear=True).endswith("Max-Age=0")


def test_password_is_checked_against_the_scram_credential(tmp_path):
    path = tmp_path / "users.json"
    add_user(path, "alice", "alice pass", iterations=4096)
    users = LiveUsers(path)
    assert check_password(users, "alice", "alice pass")
    assert not check_password(users, "alice", "alice pass ")
    assert not check_password(users, "bob", "alice pass")
    add_user(path, "bob", "bob pass", iterations=4096)  # picked up without a restart
    assert check_password(users, "bob", "bob pass")


def test_console_configuration(tmp_path):
    assert load_config(env={}).values["console.listen"] == ""
    config = load_config(env={}, flags={"console.listen": "127.0.0.1:7480"})
    assert config.get("console", "listen") == "127.0.0.1:7480"
    config = load_config(env={"TAILRACE_CONSOLE_LISTEN": "[::1]:0"})
    assert config.get("console", "listen") == "[::1]:0"
    with pytest.raises(ConfigError, match="not a loopback address and no listener authenticates"):
        load_config(env={}, flags={"console.listen": "0.0.0.0:7480"})
    with pytest.raises(ConfigError, match="is the address of listener 'default' too"):
        load_config(env={}, flags={"console.listen": "127.0.0.1:7420"})
    with pytest.raises(ConfigError, match=r"console\.listen = 'nope' is not HOST:PORT"):
        load_config(env={}, flags={"console.listen": "nope"})
    toml = tmp_path / "broker.toml"
    toml.write_text('[console]\nlisten = "localhost:0"\n')
    assert load_config(str(toml), env={}).get("console", "listen") == "localhost:0"
