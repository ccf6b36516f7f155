"""Error lines and exit codes of the real ``tailrace`` process."""

from __future__ import annotations

import argparse
import socket

import pytest
from cli_helpers import cli_env, run_cli
from harness import ThreadedBroker

from tailrace.broker.cli.common import DEFAULT_BOOTSTRAP, resolve_bootstrap


@pytest.fixture(scope="module")
def addr(tmp_path_factory: pytest.TempPathFactory):
    b = ThreadedBroker(tmp_path_factory.mktemp("errors") / "data")
    try:
        yield b.address
    finally:
        b.stop()


def _closed_port() -> str:
    """A loopback address nothing listens on (bound, never listening)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    "args",
    [
        ["topics", "list"],
        ["topics", "create", "t"],
        ["offsets", "t"],
        ["produce", "t"],
        ["consume", "t", "--timeout-ms", "100"],
    ],
)
def test_broker_down_is_one_line_naming_the_address(args):
    down = _closed_port()
    r = run_cli(*args, "--bootstrap", down, stdin=b"x\n")
    assert r.code == 1
    assert r.err == f"tailrace: cannot reach broker at {down}: Connection refused\n"
    assert r.out == b""


def test_bootstrap_comes_from_the_environment_then_the_default():
    down = _closed_port()
    r = run_cli("topics", "list", env=cli_env(down))
    assert r.code == 1
    assert f"cannot reach broker at {down}" in r.err
    # the flag wins over the environment
    other = _closed_port()
    r = run_cli("topics", "list", "--bootstrap", other, env=cli_env(down))
    assert f"cannot reach broker at {other}" in r.err


def test_bootstrap_default_when_neither_flag_nor_environment():
    args = argparse.Namespace(bootstrap=None)
    assert resolve_bootstrap(args, environ={}) == DEFAULT_BOOTSTRAP == "127.0.0.1:7420"
    assert resolve_bootstrap(args, environ={"TAILRACE_BOOTSTRAP": "h:1"}) == "h:1"
    args.bootstrap = "f:2"
    assert resolve_bootstrap(args, environ={"TAILRACE_BOOTSTRAP": "h:1"}) == "f:2"


def test_bad_bootstrap_is_a_usage_error():
    r = run_cli("topics", "list", "--bootstrap", "no-port")
    assert r.code == 2
    assert r.err == "tailrace: --bootstrap: bad broker address 'no-port': expected host:port\n"
    r = run_cli("topics", "list", env=cli_env("nonsense"))
    assert r.code == 2
    assert r.err.startswith("tailrace: TAILRACE_BOOTSTRAP: ")


def test_debug_shows_the_traceback():
    down = _closed_port()
    r = run_cli("--debug", "topics", "list", "--bootstrap", down)
    assert r.code == 1
    assert "Traceback (most recent call last)" in r.err
    assert "BrokerUnavailableError" in r.err


@pytest.mark.parametrize(
    "args",
    [
        ["consume", "missing", "--timeout-ms", "100"],
        ["produce", "missing"],
        ["offsets", "missing"],
        ["topics", "describe", "missing"],
    ],
)
def test_unknown_topic_is_exit_1(addr, args):
    r = run_cli(*args, bootstrap=addr, stdin=b"a\n")
    assert r.code == 1
    assert r.err == "tailrace: unknown topic 'missing'\n"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nonsense"],
        ["topics"],
        ["consume"],
        ["consume", "t", "--from-beginning", "--offset", "3"],
        ["produce", "t", "--acks", "2"],
        ["topics", "create", "t", "--config", "novalue"],
    ],
)
def test_argparse_usage_errors_exit_2(args):
    r = run_cli(*args)
    assert r.code == 2
    assert "usage: tailrace" in r.err
