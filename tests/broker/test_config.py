"""Broker configuration: defaults, precedence, and refusals that name the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tailrace.broker.config import (
    SETTINGS,
    BrokerConfig,
    ConfigError,
    ListenerConfig,
    load_config,
    parse_address,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "broker.toml"
#: keys of the [[listeners]] table, which documents them in one comment block
LISTENER_KEYS = ("name", "address", "security", "authentication")


def test_documented_file_lists_every_key_with_its_default():
    doc = tomllib.loads(SAMPLE.read_text())
    listed = {k for k, v in doc.items() if not isinstance(v, (dict, list))}
    for section, table in doc.items():
        if isinstance(table, dict):
            listed |= {f"{section}.{k}" for k in table}
    assert listed == {s.name for s in SETTINGS}
    config = load_config(str(SAMPLE), env={})
    assert config.values == BrokerConfig().values
    assert config.listeners == BrokerConfig().listeners


def test_every_key_in_the_file_has_a_comment_line_above_it():
    lines = SAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line) and not line.startswith(LISTENER_KEYS):
            assert lines[i - 1].startswith("# "), line


def test_precedence_flag_over_env_over_file(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text('data_dir = "/from/file"\n[limits]\nmax_connections = 5\n')
    config = load_config(str(path), env={})
    assert config.data_dir == "/from/file"
    assert config.sources["data_dir"] == "file"
    config = load_config(str(path), env={"TAILRACE_DATA_DIR": "/from/env"})
    assert config.data_dir == "/from/env"
    assert config.get("limits", "max_connections") == 5
    config = load_config(
        str(path),
        env={"TAILRACE_DATA_DIR": "/from/env", "TAILRACE_LIMITS_MAX_CONNECTIONS": "7"},
        flags={"data_dir": "/from/flag"},
    )
    assert config.data_dir == "/from/flag"
    assert config.sources["data_dir"] == "flag"
    assert config.get("limits", "max_connections") == 7
    assert config.sources["limits.max_connections"] == "env"


def test_listen_flag_and_env(tmp_path):
    config = load_config(env={"TAILRACE_LISTEN": "127.0.0.1:9000,[::1]:9001"})
    assert config.listeners == (
        ListenerConfig("default", "127.0.0.1", 9000),
        ListenerConfig("listener1", "::1", 9001),
    )
    config = load_config(env={"TAILRACE_LISTEN": "127.0.0.1:9000"}, flags={"listen": "127.0.0.1:0"})
    assert config.listeners[0].port == 0


def test_listeners_from_file(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(
        '[[listeners]]\nname = "a"\naddress = "127.0.0.1:1"\n'
        '[[listeners]]\nname = "b"\naddress = "127.0.0.2:2"\n'
    )
    config = load_config(str(path), env={})
    assert [lc.address for lc in config.listeners] == ["127.0.0.1:1", "127.0.0.2:2"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("data_dri = 'x'", "unknown key 'data_dri'"),
        ("[limits]\nmax_conections = 1", "unknown key 'max_conections' in \\[limits\\]"),
        ("[limits]\nmax_connections = 'many'", "limits.max_connections must be an integer"),
        ("[limits]\nmax_connections = 0", "limits.max_connections = 0 must be at least 1"),
        (
            "[groups]\noffsets_topic_replication_factor = 0",
            "groups.offsets_topic_replication_factor = 0 must be -1",
        ),
        (
            "[topic_defaults]\nflush = 'sometimes'",
            "topic_defaults.flush = 'sometimes' must be one of",
        ),
        ("[topic_defaults]\nsegment_bytes = -5", "topic_defaults: segment_bytes"),
        ("fetch_zero_copy = 'yes'", "fetch_zero_copy must be true or false"),
        ("[[listeners]]\naddress = 'nohost'", "listeners\\[0\\].address"),
        (
            "[[listeners]]\naddress = '127.0.0.1:1'\nsecurity = 'tls'",
            "security = tls needs tls_cert_file and tls_key_file",
        ),
        (
            "[[listeners]]\naddress = '127.0.0.1:1'\nsecurity = 'ssl'",
            "must be one of plaintext, tls",
        ),
        (
            "[[listeners]]\naddress = '127.0.0.1:1'\nauthentication = 'mtls'",
            "authentication = mtls needs security = tls and tls_client_ca_file",
        ),
        (
            "[[listeners]]\naddress = '127.0.0.1:1'\ntls_cert_file = 'c.pem'",
            "tls_cert_file is set but security is not tls",
        ),
        (
            "[[listeners]]\naddress = '127.0.0.1:1'\nauthentication = 'sasl'",
            "needs security.users_file",
        ),
        (
            "[[listeners]]\naddress = '127.0.0.1:1'\nauthentication = 'sasl'\n"
            "sasl_mechanisms = ['GSSAPI']",
            "sasl_mechanisms must be a non-empty list",
        ),
        (
            "[[listeners]]\naddress = '127.0.0.1:1'\nsecurity = 'tls'\n"
            "tls_cert_file = '/nonexistent.pem'\ntls_key_file = '/nonexistent.key'",
            "tls_cert_file '/nonexistent.pem' is not a readable file",
        ),
        ("[security]\nsuper_users = 'admin'", "security.super_users = 'admin' is not a list"),
        ("[security]\nsuper_users = 'User:a;*'", "must not contain"),
        ("[security]\nauthorizer = 'yes'", "must be one of auto, on, off"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path, text, match):
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(str(path), env={})


def test_bad_env_values_name_the_variable():
    with pytest.raises(ConfigError, match="TAILRACE_LIMITS_MAX_CONNECTIONS"):
        load_config(env={"TAILRACE_LIMITS_MAX_CONNECTIONS": "ten"})
    with pytest.raises(ConfigError, match="unknown variable TAILRACE_DATADIR"):
        load_config(env={"TAILRACE_DATADIR": "/x"})
    with pytest.raises(ConfigError, match="TAILRACE_FETCH_ZERO_COPY"):
        load_config(env={"TAILRACE_FETCH_ZERO_COPY": "perhaps"})


def test_client_variables_are_not_broker_keys():
    load_config(env={"TAILRACE_BOOTSTRAP": "127.0.0.1:1"})


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config("/nonexistent/broker.toml", env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7420", ("127.0.0.1", 7420)),
        ("[::1]:0", ("::1", 0)),
        ("host:65535", ("host", 65535)),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["nohost", ":1", "h:70000", "h:x", "[::1]", "[::1]9"])
def test_parse_address_refuses(text):
    with pytest.raises(ValueError, match="bad address"):
        parse_address(text)


def test_topic_defaults_flow_into_log_config():
    config = load_config(
        env={"TAILRACE_TOPIC_DEFAULTS_FLUSH": "none", "TAILRACE_LIMITS_MAX_BATCH_BYTES": "1048576"}
    )
    assert config.topic_defaults.flush == "none"
    assert config.topic_defaults.max_batch_bytes == 1 << 20
    assert config.differences() == {
        "topic_defaults.flush": "none",
        "limits.max_batch_bytes": 1 << 20,
    }


def test_fault_seams_are_not_settings():
    """TAILRACE_FAULT_* are test-only fault seams read by the code they
    break (broker/cluster/decisions.py, broker/cluster/replicas.py), never
    config keys: the loader leaves them alone instead of refusing to start;
    and both are off unless the environment sets them."""
    from tailrace.broker.cluster import decisions, replicas

    env = {"TAILRACE_FAULT_UNCLEAN_ELECTION": "1", "TAILRACE_FAULT_TRUNCATE_TO_HW": "1"}
    cfg = load_config(env=env)
    assert all(source == "default" for source in cfg.sources.values())
    assert not decisions.UNSAFE_UNCLEAN_ELECTION
    assert not replicas.UNSAFE_TRUNCATE_TO_HW
