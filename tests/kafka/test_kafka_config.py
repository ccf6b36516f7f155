"""Kafka listeners in the configuration, the flag and the environment, and
the broker process's log line that names the bound Kafka address."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from harness import BrokerProcess
from kafka_samples import RawKafkaClient, request

from tailrace.broker.config import ConfigError, load_config


def _toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "broker.toml"
    path.write_text(text)
    return str(path)


def test_a_listener_table_chooses_kafka(tmp_path):
    path = _toml(
        tmp_path,
        '[[listeners]]\nname = "k"\naddress = "127.0.0.1:9092"\nprotocol = "kafka"\n'
        '[[listeners]]\nname = "n"\naddress = "127.0.0.1:7420"\n',
    )
    config = load_config(path, env={})
    # native listeners first, whatever the file's order
    assert [(lc.name, lc.protocol) for lc in config.listeners] == [
        ("n", "tailrace"),
        ("k", "kafka"),
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('protocol = "amqp"', "must be one of tailrace, kafka"),
        ("protocol = 9092", "must be one of tailrace, kafka"),
    ],
)
def test_bad_listener_protocols_are_configuration_errors(tmp_path, extra, message):
    path = _toml(
        tmp_path,
        f'[security]\nusers_file = "u"\n[[listeners]]\naddress = "127.0.0.1:9092"\n{extra}\n',
    )
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_flag_and_environment_add_a_kafka_listener():
    by_env = load_config(env={"TAILRACE_KAFKA_LISTEN": "127.0.0.1:9093"})
    by_flag = load_config(env={}, flags={"kafka_listen": "127.0.0.1:9094"})
    assert [(lc.name, lc.address, lc.protocol) for lc in by_env.listeners] == [
        ("default", "127.0.0.1:7420", "tailrace"),
        ("kafka", "127.0.0.1:9093", "kafka"),
    ]
    assert by_flag.listeners[1].address == "127.0.0.1:9094"
    assert by_flag.listeners[1].kafka


def test_the_broker_process_logs_the_kafka_address_after_the_native_one(tmp_path):
    with BrokerProcess(tmp_path / "data", "--kafka-listen", "127.0.0.1:0") as proc:
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = [line for line in proc.log_lines if " listening " in line]
            if len(lines) == 2:
                break
            time.sleep(0.05)
        assert len(lines) == 2
        assert "protocol=kafka" not in lines[0]
        assert proc.address in lines[0]
        m = re.search(r"listening protocol=kafka .*address=(\S+)", lines[1])
        assert m is not None
        with RawKafkaClient(m.group(1)) as client:
            assert client.call(request(18, 3), 3).error_code == 0
        assert proc.terminate() == 0
