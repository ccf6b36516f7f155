"""``tailrace broker`` as real processes: the data-directory lock refuses a
second broker with one clear line, JSON logs parse line by line,
``--check-config`` validates without touching the data directory."""

from __future__ import annotations

import json
import socket
import subprocess

from ops_helpers import (
    JsonBroker,
    batch,
    broker_command,
    child_env,
    create_topic,
    fetch,
    http_get,
    produce,
    scrape,
    value,
)

from tailrace.client.transport import BrokerConnection

FIELDS = {"ts", "level", "logger", "msg"}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        broker_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**child_env(), **(env or {})},
    )


def _json_lines(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        obj = json.loads(line)  # every line, or the test fails here
        assert obj.keys() >= FIELDS, line
        out.append(obj)
    return out


async def test_a_second_broker_on_the_same_data_directory_refuses(nursery, tmp_path):
    data_dir = tmp_path / "data"
    first = JsonBroker(data_dir, ("--metrics", "127.0.0.1:0")).start()
    try:
        conn = await BrokerConnection.connect(nursery, first.address)
        await create_topic(conn, "events")
        for i in range(3):
            response = await produce(conn, "events", batch(i * 10, n=10))
            assert response.topics[0].partitions[0].error_code == 0

        # JSON at level ERROR: exactly the one line that says why
        second = _run(
            "--data-dir",
            str(data_dir),
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-level",
            "ERROR",
        )
        assert second.returncode == 1
        assert second.stdout == ""
        [line] = second.stderr.splitlines()
        obj = json.loads(line)
        assert (obj["level"], obj["msg"]) == ("ERROR", "cannot start")
        assert obj["error"] == f"data directory {data_dir} is in use by another process"

        # the default key=value format: the start-up line, then the same reason
        second = _run("--data-dir", str(data_dir), "--listen", "127.0.0.1:0")
        assert second.returncode == 1
        lines = second.stderr.splitlines()
        assert len(lines) == 2, second.stderr
        assert " INFO tailrace.broker starting " in lines[0]
        assert lines[1].endswith(
            f' ERROR tailrace.broker cannot start error="data directory {data_dir} is in use '
            'by another process"'
        )

        # the first broker never noticed: same records, still ready
        got = await fetch(conn, "events", 0)
        assert got.error_code == 0
        assert got.high_watermark == 30
        assert (await http_get(first.metrics_address, "/health/ready")).status == 200
        await conn.aclose()
    finally:
        code = first.terminate()
    assert code == 0
    stopped = [o for o in _json_lines(first.lines) if o["msg"] == "stopped"]
    assert stopped == [{**stopped[0], "clean": True}]


async def test_every_json_log_line_parses(nursery, tmp_path):
    broker = JsonBroker(tmp_path / "data", ("--metrics", "127.0.0.1:0")).start()
    try:
        conn = await BrokerConnection.connect(nursery, broker.address)
        await create_topic(conn, "events")
        response = await produce(conn, "events", batch(0, n=5))
        assert response.topics[0].partitions[0].error_code == 0
        assert (await fetch(conn, "events", 0)).high_watermark == 5
        await conn.aclose()
        # a client speaking nonsense: a warning about its connection
        host, port = broker.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as bad:
            bad.sendall(b"\xff\xff\xff\xffnot a frame")
            assert bad.recv(10) == b""
        samples = await scrape(broker.metrics_address)
        assert value(samples, "tailrace_produced_records_total") == 5
        assert (await http_get(broker.metrics_address, "/metrics", method="POST")).status == 405
    finally:
        code = broker.terminate()
    assert code == 0
    events = _json_lines(broker.lines)
    by_msg = {o["msg"]: o for o in events}
    assert by_msg["starting"]["metrics_listen"] == "127.0.0.1:0"
    assert by_msg["serving metrics and health checks"]["address"] == broker.metrics_address
    assert by_msg["listening"]["address"] == broker.address
    assert by_msg["closing connection"]["level"] == "INFO"
    assert "protocol error" in by_msg["closing connection"]["reason"]
    assert by_msg["metrics request refused"]["status"] == 405
    assert by_msg["signal received, stopping"]["signal"] == "SIGTERM"
    assert by_msg["stopped"]["clean"] is True


def test_check_config_prints_the_differences_and_touches_nothing(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text("[limits]\nmax_connections = 5\n")
    data_dir = tmp_path / "never-created"
    result = _run(
        "--check-config",
        "--config",
        str(path),
        "--data-dir",
        str(data_dir),
        "--metrics",
        "127.0.0.1:9420",
        env={"TAILRACE_LOG_FORMAT": "json"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "configuration is valid; 4 setting(s) differ from the defaults:",
        f'data_dir = "{data_dir}"  # flag',
        'log_format = "json"  # env',
        'metrics_listen = "127.0.0.1:9420"  # flag',
        "limits.max_connections = 5  # file",
    ]
    assert not data_dir.exists()

    result = _run("--check-config", "--listen", "127.0.0.1:7999")
    assert result.returncode == 0
    assert result.stdout.splitlines()[1:] == ['listeners = "default=127.0.0.1:7999"  # flag']


def test_check_config_refuses_bad_values_with_exit_code_2(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text("bogus = 1\n")
    cases = [
        (("--config", str(path)), {}, f"{path}: unknown key 'bogus'"),
        (
            (),
            {"TAILRACE_LIMITS_MAX_CONNECTIONS": "lots"},
            "environment: TAILRACE_LIMITS_MAX_CONNECTIONS: 'lots' is not an integer",
        ),
        (("--metrics", "nonsense"), {}, "--metrics: metrics_listen = 'nonsense' is not HOST:PORT"),
        (
            ("--metrics", "127.0.0.1:7420"),
            {},
            "metrics_listen 127.0.0.1:7420 is the address of listener 'default' too",
        ),
    ]
    for args, env, message in cases:
        result = _run("--check-config", "--data-dir", str(tmp_path / "d"), *args, env=env)
        assert result.returncode == 2, (args, result.stdout)
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith(f"tailrace broker: configuration error: {message}"), line
    assert not (tmp_path / "d").exists()
