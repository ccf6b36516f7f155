"""``tailrace topics ...`` and ``tailrace offsets`` against a real broker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cli_helpers import call_main
from harness import ThreadedBroker

from tailrace.client import Producer


@pytest.fixture(scope="module")
def addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    b = ThreadedBroker(tmp_path_factory.mktemp("topics") / "data")
    try:
        yield b.address
    finally:
        b.stop()


def cli(addr: str, *args: str):
    return call_main([*args, "--bootstrap", addr])


def test_create_then_list_and_describe_as_json(addr):
    r = cli(addr, "topics", "create", "orders", "--partitions", "3", "--config", "flush=none")
    assert r.code == 0, r.err
    assert "orders" in r.text
    assert "3 partitions" in r.text

    listed = json.loads(cli(addr, "topics", "list", "--json").out)
    entry = next(t for t in listed["topics"] if t["name"] == "orders")
    assert entry == {"name": "orders", "internal": False, "partitions": 3, "size_bytes": 0}

    desc = json.loads(cli(addr, "topics", "describe", "orders", "--json").out)
    assert desc["name"] == "orders"
    assert desc["internal"] is False
    assert [p["partition"] for p in desc["partitions"]] == [0, 1, 2]
    assert set(desc["partitions"][0]) == {
        "partition",
        "log_start_offset",
        "high_watermark",
        "log_end_offset",
        "size_bytes",
        "segment_count",
        "dirty_bytes",
        "cleanable_bytes",
        "last_clean_ms",
        "leader",
        "leader_epoch",
        "replicas",
        "isr",
        "offline_replicas",
        "error",
    }
    # a single node: this broker (node 0) leads every partition, no epochs
    placed = desc["partitions"][0]
    assert (placed["leader"], placed["leader_epoch"], placed["replicas"], placed["isr"]) == (
        0,
        -1,
        [0],
        [0],
    )
    assert desc["configs"]["flush"] == {"value": "none", "source": "topic", "read_only": False}
    assert desc["configs"]["retention_ms"]["source"] == "default"


def test_describe_reports_offsets_and_sizes_after_produce(addr):
    assert cli(addr, "topics", "create", "sized", "--partitions", "2").code == 0
    with Producer(addr) as producer:
        for _i in range(5):
            producer.send("sized", b"x" * 100, partition=1)
        producer.flush()
    desc = json.loads(cli(addr, "topics", "describe", "sized", "--json").out)
    p0, p1 = desc["partitions"]
    assert (p0["log_start_offset"], p0["high_watermark"], p0["log_end_offset"]) == (0, 0, 0)
    assert (p1["high_watermark"], p1["log_end_offset"]) == (5, 5)
    assert p1["size_bytes"] > 500
    assert p0["size_bytes"] == 0
    assert p1["segment_count"] >= 1

    offsets = json.loads(cli(addr, "offsets", "sized", "--json").out)
    assert offsets == {
        "topic": "sized",
        "partitions": [
            {"partition": 0, "earliest": 0, "latest": 0},
            {"partition": 1, "earliest": 0, "latest": 5},
        ],
    }


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def test_human_output_is_aligned_tables(addr):
    assert cli(addr, "topics", "create", "tables", "--partitions", "2").code == 0
    with Producer(addr) as producer:
        for _ in range(12):
            producer.send("tables", b"v", partition=0)
    listing = cli(addr, "topics", "list").text.splitlines()
    assert listing[0].split() == ["TOPIC", "PARTITIONS", "SIZE"]
    row = next(line for line in listing if line.startswith("tables "))
    # numeric columns are right-aligned under their header
    assert row.index("2") + 1 == listing[0].index("PARTITIONS") + len("PARTITIONS")

    offsets = _table(cli(addr, "offsets", "tables").text)
    assert offsets == [
        ["PARTITION", "EARLIEST", "LATEST", "RECORDS"],
        ["0", "0", "12", "12"],
        ["1", "0", "0", "0"],
    ]

    text = cli(addr, "topics", "describe", "tables").text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("PARTITION"))
    assert header.split() == [
        "PARTITION",
        "LOG-START",
        "HIGH-WATERMARK",
        "LOG-END",
        "SIZE",
        "SEGMENTS",
    ]
    first = lines[lines.index(header) + 1]
    assert len(first) == len(header)  # right-aligned: rows end where the header ends
    assert first.split()[:4] == ["0", "0", "12", "12"]
    configs = lines[lines.index(next(x for x in lines if x.startswith("CONFIG"))) :]
    assert any(c.split()[:3] == ["flush", "sync", "default"] for c in configs)


def test_alter_sets_and_reverts_keys(addr):
    assert cli(addr, "topics", "create", "altered").code == 0
    r = cli(addr, "topics", "alter", "altered", "--config", "retention_ms=60000")
    assert r.code == 0, r.err
    configs = json.loads(cli(addr, "topics", "describe", "altered", "--json").out)["configs"]
    assert configs["retention_ms"] == {"value": "60000", "source": "topic", "read_only": False}

    r = cli(addr, "topics", "alter", "altered", "--delete-config", "retention_ms")
    assert r.code == 0, r.err
    configs = json.loads(cli(addr, "topics", "describe", "altered", "--json").out)["configs"]
    assert configs["retention_ms"]["source"] == "default"


def test_compacted_topic_created_and_altered_from_the_cli(addr):
    r = cli(addr, "topics", "create", "table", "--config", "cleanup_policy=compact")
    assert r.code == 0, r.err
    r = cli(addr, "topics", "alter", "table", "--config", "min_cleanable_dirty_ratio=0.2")
    assert r.code == 0, r.err
    r = cli(addr, "topics", "alter", "table", "--config", "cleanup_policy=bogus")
    assert r.code != 0
    assert "cleanup_policy" in r.err
    desc = json.loads(cli(addr, "topics", "describe", "table", "--json").out)
    configs = desc["configs"]
    assert desc["partitions"][0]["last_clean_ms"] == -1
    assert configs["cleanup_policy"]["value"] == "compact"
    assert configs["min_cleanable_dirty_ratio"] == {
        "value": "0.2",
        "source": "topic",
        "read_only": False,
    }
    text = cli(addr, "topics", "describe", "table").text
    header = next(line for line in text.splitlines() if line.startswith("PARTITION"))
    assert header.split()[-2:] == ["DIRTY", "LAST-CLEAN"]
    row = text.splitlines()[text.splitlines().index(header) + 1]
    assert row.split()[-2:] == ["0%", "never"]


def test_alter_grows_the_partition_count_and_never_shrinks_it(addr):
    assert cli(addr, "topics", "create", "grown", "--partitions", "2").code == 0
    r = cli(addr, "topics", "alter", "grown", "--partitions", "5")
    assert r.code == 0, r.err
    assert "partitions=5" in r.text
    listed = json.loads(cli(addr, "topics", "list", "--json").out)
    assert next(t for t in listed["topics"] if t["name"] == "grown")["partitions"] == 5
    r = cli(addr, "topics", "alter", "grown", "--partitions", "3")
    assert r.code == 1
    assert "5 partition(s)" in r.err
    listed = json.loads(cli(addr, "topics", "list", "--json").out)
    assert next(t for t in listed["topics"] if t["name"] == "grown")["partitions"] == 5


def test_delete_removes_the_topic(addr):
    assert cli(addr, "topics", "create", "doomed").code == 0
    r = cli(addr, "topics", "delete", "doomed")
    assert r.code == 0
    assert "deleted topic doomed" in r.text
    names = [t["name"] for t in json.loads(cli(addr, "topics", "list", "--json").out)["topics"]]
    assert "doomed" not in names
    r = cli(addr, "topics", "describe", "doomed")
    assert r.code == 1
    assert r.err == "tailrace: unknown topic 'doomed'\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["topics", "describe", "missing"], "unknown topic 'missing'"),
        (["topics", "delete", "missing"], "missing"),
        (["topics", "alter", "missing", "--config", "flush=none"], "missing"),
        (["offsets", "missing"], "unknown topic 'missing'"),
        (["topics", "create", "bad name!"], "invalid topic name"),
        (["topics", "create", "dup"], "already exists"),
        (["topics", "alter", "dup", "--config", "no_such_key=1"], "no_such_key"),
        (["topics", "create", "badcfg", "--config", "flush=sometimes"], "flush"),
    ],
)
def test_broker_refusals_are_one_line_and_exit_1(addr, args, message):
    cli(addr, "topics", "create", "dup")
    r = cli(addr, *args)
    assert r.code == 1
    assert r.err.startswith("tailrace: ")
    assert r.err.count("\n") == 1
    assert message in r.err
    assert "Traceback" not in r.err


@pytest.mark.parametrize(
    "args",
    [
        ["topics", "alter", "dup"],  # nothing to change
        ["topics", "alter", "dup", "--config", "flush=none", "--delete-config", "flush"],
        ["topics", "create", "x", "--partitions", "0"],
    ],
)
def test_usage_errors_exit_2(addr, args):
    r = cli(addr, *args)
    assert r.code == 2
    assert r.err.startswith("tailrace: ")
    assert r.err.count("\n") == 1
