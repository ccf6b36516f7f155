"""``tailrace produce`` and ``tailrace consume`` as real processes."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cli_helpers import ROOT, call_main, cli_env, run_cli, tailrace_cmd
from harness import ThreadedBroker

from tailrace.client import Admin, Producer


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedBroker]:
    b = ThreadedBroker(tmp_path_factory.mktemp("produce-consume") / "data")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def topic(broker: ThreadedBroker, request: pytest.FixtureRequest) -> str:
    """A fresh two-partition topic named for the test."""
    name = request.node.name.replace("[", "-").replace("]", "")[:200]
    with Admin(broker.address) as admin:
        admin.create_topic(name, partitions=2)
    return name


#: A safety net only: the reads below stop at --max-messages long before.
IDLE_MS = "10000"


@pytest.fixture
def sigint_not_ignored() -> Iterator[None]:
    """Children started here begin with SIGINT at its default. A shell that
    runs a job in the background (CI under nohup, a backgrounded make) starts
    it with SIGINT ignored, xdist workers inherit that, and an ignored signal
    stays ignored across exec: the CLI then rightly keeps ignoring Ctrl-C,
    as any program under nohup does. A handler in this process is reset to
    the default by exec instead."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def consume_json(addr: str, topic: str, count: int, *extra: str) -> list[dict]:
    """The first ``count`` records from the beginning, parsed."""
    r = call_main(
        [
            "consume",
            topic,
            "--from-beginning",
            "--format",
            "json",
            "--max-messages",
            str(count),
            "--timeout-ms",
            IDLE_MS,
            *extra,
            "--bootstrap",
            addr,
        ]
    )
    assert r.code == 0, r.err
    return [json.loads(line) for line in r.out.splitlines()]


def test_stdin_with_keys_round_trips_through_real_processes(broker, topic):
    lines = b"".join(b"user-%d:event %d\n" % (i % 3, i) for i in range(50))
    r = run_cli("produce", topic, "--key-separator", ":", stdin=lines, bootstrap=broker.address)
    assert r.code == 0, r.err
    assert r.err == f"produced 50 records to {topic}\n"

    r = run_cli(
        "consume", topic, "--from-beginning", "--max-messages", "50", "--format", "json",
        bootstrap=broker.address,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.err == "consumed 50 records\n"
    got = [json.loads(line) for line in r.out.splitlines()]
    assert len(got) == 50
    assert {(g["key"], g["value"]) for g in got} == {
        (f"user-{i % 3}", f"event {i}") for i in range(50)
    }
    # the same key always lands on the same partition
    partition_of = {}
    for g in got:
        assert partition_of.setdefault(g["key"], g["partition"]) == g["partition"]
        assert g["topic"] == topic
        assert g["key_encoding"] == g["value_encoding"] == "utf-8"
        assert g["headers"] == []
        assert isinstance(g["offset"], int)
        assert isinstance(g["timestamp"], int)
    # within a partition, offsets are dense from 0 and values keep their order
    for p in {g["partition"] for g in got}:
        mine = [g for g in got if g["partition"] == p]
        assert [g["offset"] for g in mine] == list(range(len(mine)))

    r = run_cli(
        "consume", topic, "--from-beginning", "--max-messages", "50", bootstrap=broker.address
    )
    assert r.code == 0
    assert sorted(r.out.splitlines()) == sorted(b"event %d" % i for i in range(50))


def test_file_with_keys_and_only_the_newline_stripped(broker, topic, tmp_path):
    path = tmp_path / "input.txt"
    path.write_bytes(b"k1\tv 1 \nk2\tv\t2\r\n\tno key\nk4\t\nlast\tline without newline")
    r = call_main(
        [
            "produce",
            topic,
            "--file",
            str(path),
            "--key-separator",
            "\t",
            "--partition",
            "1",
            "--bootstrap",
            broker.address,
        ]
    )
    assert r.code == 0, r.err
    assert r.err == f"produced 5 records to {topic}\n"
    got = consume_json(broker.address, topic, 5)
    assert [(g["partition"], g["offset"], g["key"], g["value"]) for g in got] == [
        (1, 0, "k1", "v 1 "),
        (1, 1, "k2", "v\t2\r"),
        (1, 2, "", "no key"),
        (1, 3, "k4", ""),
        (1, 4, "last", "line without newline"),
    ]


def test_lines_without_separator_give_null_keys_only_without_the_option(broker, topic):
    r = call_main(["produce", topic, "--partition", "0", "--bootstrap", broker.address], b"a:b\n\n")
    assert r.code == 0, r.err
    got = consume_json(broker.address, topic, 2)
    assert [(g["key"], g["key_encoding"], g["value"]) for g in got] == [
        (None, None, "a:b"),
        (None, None, ""),
    ]


def test_a_line_without_the_separator_stops_with_its_number(broker, topic):
    r = call_main(
        ["produce", topic, "--key-separator", "=", "--bootstrap", broker.address],
        b"a=1\nb=2\nnope\nc=3\n",
    )
    assert r.code == 1
    assert r.err == (f"produced 2 records to {topic}\ntailrace: line 3 has no key separator '='\n")
    with Admin(broker.address) as admin:
        offsets = admin.topic_offsets(topic)
    assert sum(hi - lo for lo, hi in offsets.values()) == 2


def test_binary_values_come_out_base64_in_json_and_raw_as_values(broker, topic):
    blob = bytes(range(256)).replace(b"\n", b"")
    with Producer(broker.address) as producer:
        producer.send(topic, blob, key=b"\xff\xfe", partition=0, headers=[("h", b"\x80")])
        producer.send(topic, "héllo".encode(), partition=0, headers=[("h2", b"ok"), ("n", None)])
        producer.send(topic, None, key=b"tombstone", partition=0)
    r = run_cli(
        "consume", topic, "--from-beginning", "--max-messages", "3", "--format", "json",
        bootstrap=broker.address,
    )  # fmt: skip
    assert r.code == 0, r.err
    first, second, third = (json.loads(line) for line in r.out.splitlines())
    assert first["value_encoding"] == "base64"
    assert base64.b64decode(first["value"]) == blob
    assert first["key_encoding"] == "base64"
    assert base64.b64decode(first["key"]) == b"\xff\xfe"
    assert first["headers"] == [
        {"key": "h", "value": base64.b64encode(b"\x80").decode(), "value_encoding": "base64"}
    ]
    assert (second["value"], second["value_encoding"]) == ("héllo", "utf-8")
    assert second["headers"] == [
        {"key": "h2", "value": "ok", "value_encoding": "utf-8"},
        {"key": "n", "value": None, "value_encoding": None},
    ]
    assert (third["value"], third["value_encoding"], third["key"]) == (None, None, "tombstone")

    r = run_cli(
        "consume", topic, "--from-beginning", "--max-messages", "3", bootstrap=broker.address
    )
    assert r.out == blob + b"\n" + "héllo".encode() + b"\n" + b"\n"


def test_acks_0_still_delivers_everything(broker, topic):
    r = call_main(
        ["produce", topic, "--acks", "0", "--bootstrap", broker.address],
        b"".join(b"%d\n" % i for i in range(100)),
    )
    assert r.code == 0, r.err
    assert r.err == f"produced 100 records to {topic}\n"
    got = consume_json(broker.address, topic, 100)
    assert sorted(int(g["value"]) for g in got) == list(range(100))


def test_start_positions_offset_time_partition(broker, topic):
    with Producer(broker.address) as producer:
        early = [producer.send(topic, b"early %d" % i, partition=0) for i in range(3)]
        producer.flush()
        time.sleep(0.05)
        cut = datetime.now(UTC)
        time.sleep(0.05)
        late = [producer.send(topic, b"late %d" % i, partition=p) for i, p in enumerate([0, 1])]
        producer.flush()
    assert [f.result().offset for f in early] == [0, 1, 2]
    assert [f.result().partition for f in late] == [0, 1]

    got = consume_json(broker.address, topic, 4, "--partition", "0")
    assert [g["value"] for g in got] == ["early 0", "early 1", "early 2", "late 0"]

    r = call_main(
        [
            "consume",
            topic,
            "--offset",
            "2",
            "--partition",
            "0",
            "--max-messages",
            "2",
            "--timeout-ms",
            IDLE_MS,
            "--bootstrap",
            broker.address,
        ]
    )
    assert r.code == 0, r.err
    assert r.out == b"early 2\nlate 0\n"

    for spelled in (
        cut.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        cut.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],  # no zone: UTC
        cut.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
    ):
        r = call_main(
            [
                "consume",
                topic,
                "--from-time",
                spelled,
                "--max-messages",
                "2",
                "--timeout-ms",
                IDLE_MS,
                "--bootstrap",
                broker.address,
            ]
        )
        assert r.code == 0, r.err
        assert sorted(r.out.splitlines()) == [b"late 0", b"late 1"], spelled


def test_offset_outside_the_log_is_an_error(broker, topic):
    r = call_main(
        ["consume", topic, "--offset", "99", "--timeout-ms", "2000", "--bootstrap", broker.address]
    )
    assert r.code == 1
    assert r.err.startswith("tailrace: offset 99 is outside")


def test_bad_start_and_partition_arguments(broker, topic):
    r = call_main(["consume", topic, "--from-time", "yesterday", "--bootstrap", broker.address])
    assert r.code == 2
    assert "--from-time" in r.err
    r = call_main(["consume", topic, "--partition", "5", "--bootstrap", broker.address])
    assert r.code == 1
    assert r.err == f"tailrace: partition 5 of {topic!r} does not exist (2 partitions)\n"
    r = call_main(["produce", topic, "--partition", "2", "--bootstrap", broker.address], b"x\n")
    assert r.code == 1
    assert "partition 2" in r.err


def test_default_start_is_the_end_and_timeout_exits_0(broker, topic):
    with Producer(broker.address) as producer:
        producer.send(topic, b"old", partition=0)
    r = call_main(["consume", topic, "--timeout-ms", "300", "--bootstrap", broker.address])
    assert r.code == 0
    assert r.out == b""
    assert r.err == "consumed 0 records\n"


def test_default_start_prints_records_produced_after_it_started(broker, topic):
    with Producer(broker.address) as producer:
        producer.send(topic, b"old", partition=0).result()
        proc = subprocess.Popen(
            tailrace_cmd("consume", topic, "--max-messages", "1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(broker.address),
            cwd=ROOT,
        )
        try:
            # it cannot say when it is positioned: keep producing until it prints
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                producer.send(topic, b"new", partition=0).result()
                time.sleep(0.1)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert out == b"new\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_ends_a_following_consume_with_a_summary(broker, topic, sig, sigint_not_ignored):
    with Producer(broker.address) as producer:
        for i in range(5):
            producer.send(topic, b"r%d" % i, partition=1)
    proc = subprocess.Popen(
        tailrace_cmd("consume", topic, "--from-beginning"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(broker.address),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lines == [b"r%d\n" % i for i in range(5)]
    assert rest == b""
    assert proc.returncode == 0
    assert err == b"consumed 5 records\n"


def test_ctrl_c_interrupts_produce_waiting_for_input(broker, topic, sigint_not_ignored):
    """Ctrl-C while produce is blocked reading an open stdin: what was read is
    delivered and counted, exit 130 (the signal must reach the main thread,
    not one of the producer's)."""
    proc = subprocess.Popen(
        tailrace_cmd("produce", topic, "--partition", "0"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(broker.address),
        cwd=ROOT,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"one\ntwo\n")
        proc.stdin.flush()
        with Admin(broker.address) as admin:
            deadline = time.monotonic() + 30
            while admin.topic_offsets(topic)[0][1] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)  # stdin is still open
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert code == 130
    assert err == f"produced 2 records to {topic} (interrupted)\n".encode()


def test_closed_stdout_is_not_an_error(broker, topic):
    """`tailrace consume ... | head -1`: the reader goes away, consume exits 0
    quietly at its next write (more is written than a pipe buffer holds)."""
    with Producer(broker.address) as producer:
        for i in range(20_000):
            producer.send(topic, b"%05d" % i + b"." * 95, partition=0)
    proc = subprocess.Popen(
        tailrace_cmd("consume", topic, "--from-beginning"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(broker.address),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        code = proc.wait(30)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert first == b"00000" + b"." * 95 + b"\n"
    assert code == 0
    assert err == b""


def test_produce_creates_a_missing_topic_when_the_broker_auto_creates(tmp_path):
    b = ThreadedBroker(tmp_path / "data", auto_create_topics=True)
    try:
        r = call_main(["produce", "fresh", "--bootstrap", b.address], b"hello\n")
        assert r.code == 0, r.err
        assert r.err == "produced 1 record to fresh\n"
        # consume does not create topics
        r = call_main(["consume", "other", "--timeout-ms", "100", "--bootstrap", b.address])
        assert r.code == 1
        assert r.err == "tailrace: unknown topic 'other'\n"
        with Admin(b.address) as admin:
            assert [t.name for t in admin.list_topics()] == ["fresh"]
    finally:
        b.stop()


def test_a_record_the_broker_refuses_fails_the_command(broker):
    with Admin(broker.address) as admin:
        admin.create_topic("small-batches", config={"max_batch_bytes": 1024})
    r = call_main(["produce", "small-batches", "--bootstrap", broker.address], b"x" * 3000 + b"\n")
    assert r.code == 1
    first, second = r.err.splitlines()
    assert first == "produced 0 records to small-batches"
    assert second.startswith("tailrace: ")
    assert "max_batch_bytes" in second
