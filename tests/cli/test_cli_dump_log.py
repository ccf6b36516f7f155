"""``tailrace dump-log``: the CLI's exit codes around broker/log/dump.py."""

from __future__ import annotations

import json

from cli_helpers import call_main, run_cli

from tailrace.client import Admin, Producer


def test_dump_a_live_segment_then_a_damaged_copy(threaded_broker, tmp_path):
    with Admin(threaded_broker.address) as admin:
        admin.create_topic("dumped")
    with Producer(threaded_broker.address) as producer:
        producer.send("dumped", b"first", key=b"k").result()
        producer.send("dumped", b"\xff\x00").result()
    segment = threaded_broker.data_dir / "dumped" / "0" / ("0" * 20 + ".log")

    r = call_main(["dump-log", str(segment), "--records", "--json"])
    assert r.code == 0, r.err
    batches = json.loads(r.out)
    assert [b["base_offset"] for b in batches] == [0, 1]
    assert all(b["crc_ok"] for b in batches)
    assert batches[0]["records"][0]["value"] == "first"

    data = bytearray(segment.read_bytes())
    end = sum(b["size"] for b in batches)
    data[end - 3] ^= 0xFF  # inside the second batch's records: its CRC fails
    damaged = tmp_path / segment.name
    damaged.write_bytes(bytes(data[: end + 64]))
    r = run_cli("dump-log", str(damaged))
    assert r.code == 1
    assert b"CORRUPT: invalid batch at position" in r.out


def test_unreadable_is_1_and_not_a_segment_file_is_2(tmp_path):
    missing = tmp_path / ("0" * 20 + ".log")
    r = call_main(["dump-log", str(missing)])
    assert r.code == 1
    assert r.err == f"tailrace: {missing}: No such file or directory\n"

    other = tmp_path / "notes.txt"
    other.write_text("hello")
    r = call_main(["dump-log", str(other)])
    assert r.code == 2
    assert r.err == f"tailrace: {other}: not a .log, .index, .timeindex or .snapshot file\n"
