"""The dump-log inspector on good, untrimmed and corrupted files."""

from __future__ import annotations

import io
import json

from log_helpers import batch, config, open_log

from tailrace.broker.log import dump_log
from tailrace.broker.log.dump import main
from tailrace.client.records import build_batch


def _segment(tmp_path, *, close=True):
    log = open_log(tmp_path / "p", config(segment_bytes=1 << 20, index_interval_bytes=100))
    log.append(
        build_batch(
            [(1000, b"key", b"hello", [("h", b"\x00\xff")]), (1001, None, b"\xff\xfe", None)]
        )
    )
    for k in range(5):
        log.append(batch(2, ts=2000 + k, producer=(7, 0, 2 * k)))
    path = log.segments[0].log_path
    if close:
        log.close()
    else:
        log.abandon()
    return path


def _run(path, **kw):
    out = io.StringIO()
    rc = dump_log(path, out=out, **kw)
    return rc, out.getvalue()


def test_good_segment_text_and_json(tmp_path):
    path = _segment(tmp_path)
    rc, text = _run(path)
    assert rc == 0
    lines = text.splitlines()
    assert lines[0].startswith("Dumping ")
    assert lines[1].startswith("position: 0 size: ")
    assert "base_offset: 0 last_offset: 1 record_count: 2" in lines[1]
    assert "crc_ok: True" in lines[1]
    assert "producer_id: 7 producer_epoch: 0 base_sequence: 0" in lines[2]
    assert lines[-1].startswith("end of data at position ")
    rc, text = _run(path, as_json=True, records=True)
    assert rc == 0
    doc = json.loads(text)
    assert len(doc) == 6
    first = doc[0]
    for key in (
        "position",
        "size",
        "base_offset",
        "last_offset",
        "record_count",
        "max_timestamp",
        "crc_ok",
    ):
        assert key in first
    assert (first["base_offset"], first["last_offset"], first["max_timestamp"]) == (0, 1, 1001)
    assert first["records"][0] == {
        "offset": 0,
        "timestamp": 1000,
        "key": "key",
        "value": "hello",
        "headers": [{"key": "h", "value_base64": "AP8="}],
    }
    assert first["records"][1]["value_base64"] == "//4="
    assert first["records"][1]["key"] is None
    assert doc[1]["position"] == first["size"]


def test_untrimmed_preallocation_is_not_corruption(tmp_path):
    path = _segment(tmp_path, close=False)  # crash: preallocated zeros remain
    rc, text = _run(path)
    assert rc == 0
    assert "bytes of zero padding follow" in text.splitlines()[-1]


def test_corruption_is_reported_with_its_position(tmp_path):
    path = _segment(tmp_path)
    doc = json.loads(_run(path, as_json=True)[1])
    bad = doc[3]["position"]
    with open(path, "r+b") as f:
        f.seek(bad + 70)
        f.write(b"\x00\x00\x00")
    rc, text = _run(path)
    assert rc == 1
    assert text.splitlines()[-1].startswith(
        f"CORRUPT: invalid batch at position {bad}: CRC-32C mismatch"
    )
    assert text.count("crc_ok: True") == 3
    rc, text = _run(path, as_json=True)
    doc = json.loads(text)
    assert rc == 1
    assert doc[-1]["position"] == bad
    assert doc[-1]["crc_ok"] is False
    assert "CRC" in doc[-1]["error"]


def test_index_files_and_cli_entry(tmp_path, capsys):
    path = _segment(tmp_path)
    index = path[: -len(".log")] + ".index"
    rc, text = _run(index, as_json=True)
    assert rc == 0
    entries = json.loads(text)
    assert entries
    assert all(e["position"] > 0 for e in entries)
    rc, text = _run(path[: -len(".log")] + ".timeindex", as_json=True)
    assert rc == 0
    assert json.loads(text)[-1]["timestamp"] == 2005  # the last record of the last batch
    with open(index, "r+b") as f:
        f.write(b"\x00" * 8)
    assert _run(index)[0] == 1
    assert main([path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["base_offset"] == 0
    assert dump_log(str(tmp_path / "nothing.txt"), out=io.StringIO()) == 2
