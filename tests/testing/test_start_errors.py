"""Start-up failures a user can fix come as BrokerStartError saying what to do."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import tailrace.testing
from tailrace.testing import BrokerStartError


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_restart_on_a_port_taken_meanwhile(process: bool):
    with tailrace.testing.broker(process=process) as b:
        port = int(b.bootstrap.rsplit(":", 1)[1])
        b.stop()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            with pytest.raises(BrokerStartError, match="in use by another process") as info:
                b.start()
        assert f"127.0.0.1:{port}" in str(info.value)
        assert "start a new broker instead of restarting" in str(info.value)
        assert not b.running
        b.start()  # free again: the same broker comes back on its port
        assert b.bootstrap == f"127.0.0.1:{port}"


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_two_brokers_on_one_data_dir(tmp_path: Path, process: bool):
    with tailrace.testing.broker(data_dir=tmp_path / "shared"):
        second = tailrace.testing.broker(process=process, data_dir=tmp_path / "shared")
        with pytest.raises(BrokerStartError, match="in use by another broker") as info:
            second.start()
        assert "pass another one, or leave data_dir unset" in str(info.value)


def test_data_dir_that_is_a_file(tmp_path: Path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(BrokerStartError, match="exists and is not a directory"):
        tailrace.testing.broker(data_dir=path).start()


@pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])
def test_unknown_setting_is_named_as_given(process: bool):
    # a broker process reads settings as TAILRACE_* variables; the error
    # names the setting the caller gave, not the variable
    with pytest.raises(BrokerStartError) as info:
        tailrace.testing.broker(process=process, settings={"no_such_setting": 1}).start()
    assert "no_such_setting" in str(info.value)
    assert "TAILRACE_" not in str(info.value)


def test_invalid_setting_value():
    with pytest.raises(BrokerStartError, match=r"bad broker setting.*flush"):
        tailrace.testing.broker(settings={"topic_defaults.flush": "sometimes"}).start()


def test_a_given_data_dir_is_kept(tmp_path: Path):
    with tailrace.testing.broker(data_dir=tmp_path / "mine") as b:
        b.create_topic("stays")
    assert (tmp_path / "mine" / "stays").is_dir()
