"""``tailrace groups ...`` and ``tailrace consume --group`` end to end against
a real broker: JSON parsed (not string-matched), exit codes, refusals."""

from __future__ import annotations

import json
import subprocess

import pytest
from cli_helpers import ROOT, call_main, cli_env, run_cli, tailrace_cmd
from harness import ThreadedBroker

from tailrace.client import Admin, Consumer, Producer


@pytest.fixture
def broker(tmp_path):
    b = ThreadedBroker(tmp_path / "data", groups__session_timeout_min_ms=100)
    try:
        with Admin(b.address) as admin:
            admin.create_topic("t", partitions=3, config={"flush": "none"})
        with Producer(b.address) as producer:
            for i in range(30):
                producer.send("t", b"v%d" % i, partition=i % 3)
            producer.flush()
        yield b
    finally:
        b.stop()


def cli(broker, *args: str):
    return call_main([*args, "--bootstrap", broker.address])


def test_list_describe_reset_delete(broker):
    r = cli(broker, "groups", "list", "--json")
    assert (r.code, json.loads(r.text)) == (0, {"groups": []})
    r = cli(broker, "groups", "describe", "g")
    assert r.code == 1
    assert r.err.strip() == "tailrace: no group 'g'"

    r = cli(broker, "groups", "reset-offsets", "g", "--topic", "t", "--to-offset", "4")
    assert r.code == 0, r.err
    assert r.text.split("\n")[0].split() == ["TOPIC", "PARTITION", "NEW-OFFSET"]
    r = cli(broker, "groups", "reset-offsets", "g", "--topic", "t:1", "--to-earliest", "--json")
    assert json.loads(r.text) == {
        "group_id": "g",
        "topic": "t",
        "dry_run": False,
        "offsets": [{"partition": 1, "offset": 0}],
    }
    r = cli(broker, "groups", "reset-offsets", "g", "--topic", "t", "--to-latest", "--dry-run")
    assert (r.code, r.err) == (0, "dry run: nothing changed\n")
    r = cli(broker, "groups", "reset-offsets", "g", "--topic", "t:2", "--to-offset", "11")
    assert r.code == 1
    assert "outside [0, 10]" in r.err
    r = cli(broker, "groups", "reset-offsets", "g", "--topic", "t", "--to-time", "2000-01-01")
    assert r.code == 0, r.err

    r = cli(broker, "groups", "describe", "g", "--json")
    desc = json.loads(r.text)
    assert (desc["group_id"], desc["state"], desc["members"]) == ("g", "Empty", [])
    rows = [
        (o["partition"], o["committed_offset"], o["log_end_offset"], o["lag"])
        for o in desc["offsets"]
    ]
    assert rows == [(0, 0, 10, 10), (1, 0, 10, 10), (2, 0, 10, 10)]
    r = cli(broker, "groups", "list", "--json")
    assert json.loads(r.text) == {
        "groups": [{"group_id": "g", "state": "Empty", "members": 0, "group_epoch": 0}]
    }

    with Consumer(broker.address, group_id="g", session_timeout_ms=5000) as c:
        c.subscribe(["t"])
        while not c.assignment():
            c.poll(timeout_ms=50)
        r = cli(broker, "groups", "describe", "g")
        assert r.code == 0, r.err
        head, offsets, members = r.text.split("\n\n")
        assert head.startswith("GROUP g  STATE Stable")
        assert offsets.split("\n")[0].split() == [
            "TOPIC",
            "PARTITION",
            "COMMITTED",
            "LOG-END",
            "LAG",
            "MEMBER",
        ]
        assert c.member_id in members
        r = cli(broker, "groups", "reset-offsets", "g", "--topic", "t", "--to-earliest")
        assert r.code == 1
        assert "active member" in r.err
        r = cli(broker, "groups", "delete", "g")
        assert r.code == 1
        assert "active member" in r.err
    r = cli(broker, "groups", "delete", "g")
    assert (r.code, r.text) == (0, "deleted group g\n")
    assert json.loads(cli(broker, "groups", "list", "--json").text) == {"groups": []}


def test_usage_errors_exit_2(broker):
    r = cli(broker, "groups", "reset-offsets", "g", "--topic", "t:x", "--to-latest")
    assert (r.code, r.err.strip()) == (
        2,
        "tailrace: --topic 't:x': partitions are numbers, e.g. t:0,2",
    )
    r = cli(broker, "groups", "reset-offsets", "g", "--topic", "t", "--to-time", "soon")
    assert r.code == 2
    r = run_cli("groups", "reset-offsets", "g", "--topic", "t", bootstrap=broker.address)
    assert r.code == 2  # one of the --to-... options is required


def test_consume_with_a_group_starts_at_its_offsets_and_commits_what_it_printed(broker):
    r = cli(broker, "consume", "t", "--group", "g", "--from-beginning", "--max-messages", "12")
    assert r.code == 0, r.err
    first = r.text.split()
    assert len(first) == 12
    desc = json.loads(cli(broker, "groups", "describe", "g", "--json").text)
    assert sum(o["committed_offset"] for o in desc["offsets"]) == 12
    assert desc["members"] == []  # it left on exit

    # where the group committed, it resumes there; elsewhere --from-beginning
    r = cli(broker, "consume", "t", "--group", "g", "--from-beginning", "--timeout-ms", "1000")
    rest = r.text.split()
    assert sorted(first + rest) == sorted(f"v{i}" for i in range(30))
    r = cli(broker, "consume", "t", "--group", "g", "--from-beginning", "--timeout-ms", "300")
    assert (r.code, r.text) == (0, "")  # everything printed was committed

    r = cli(broker, "consume", "t", "--group", "g", "--offset", "3")
    assert r.code == 2
    assert "reset-offsets" in r.err


def test_two_consume_processes_in_one_group_print_each_record_once(broker):
    cmd = tailrace_cmd(
        "consume", "t", "--group", "shared", "--from-beginning", "--timeout-ms", "2000"
    )
    procs = [
        subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(broker.address),
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    printed = [line for out, _ in outputs for line in out.decode().split()]
    assert sorted(printed) == sorted(f"v{i}" for i in range(30))
