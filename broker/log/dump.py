"""``tailrace dump-log PATH [--records] [--json]``: inspect segment files.

For a ``.log`` file: one line (or JSON object) per batch with its position,
size, offsets, record count, timestamps, CRC verdict, compression and
producer fields; with ``records`` also every record (offset, timestamp, key,
value, headers; bytes shown as UTF-8 when they decode, else base64). The walk
stops at the first invalid batch and prints its byte position: exit code 1.
Zeros after the last batch are the untrimmed preallocation of an active (or
crashed) segment, not corruption: the end of data is reported, exit code 0.

``.index``, ``.timeindex`` and ``.snapshot`` files are dumped entry by entry,
with exit code 1 when their structure is damaged.

The CLI wires :func:`dump_log` to the ``dump-log`` command; ``python -m
tailrace.broker.log.dump`` runs it directly.
"""

from __future__ import annotations

import argparse
import base64
import json
import mmap
import os
import sys
from typing import Any, TextIO

import crc32c

from tailrace.client.errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError
from tailrace.client.records import (
    CRC_START,
    HEADER_SIZE,
    BatchHeader,
    iter_records,
    read_header,
    validate_batch,
)

from .cleaner import read_checkpoint
from .files import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SNAPSHOT_SUFFIX,
    TIMEINDEX_SUFFIX,
    parse_offset_file_name,
)
from .index import OFFSET_ENTRY, TIME_ENTRY
from .producer_state import ProducerStateManager
from .recovery import zero_tail

__all__ = ["dump_log", "main"]

_COMPRESSION = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_BAD_BATCH = (InvalidRecordError, CorruptRecordError, RecordTooLargeError)


def dump_log(
    path: str, *, records: bool = False, as_json: bool = False, out: TextIO | None = None
) -> int:
    """Print the contents of a segment file; returns the exit code: 0 good,
    1 corruption found, 2 the file cannot be read or has an unknown suffix."""
    out = out or sys.stdout
    name = os.path.basename(path)
    parsed = parse_offset_file_name(name)
    base = parsed[0] if parsed else None
    try:
        if name.endswith(LOG_SUFFIX):
            return _dump_segment(path, base, records, as_json, out)
        if name.endswith(INDEX_SUFFIX):
            return _dump_index(path, base, as_json, out, time_index=False)
        if name.endswith(TIMEINDEX_SUFFIX):
            return _dump_index(path, base, as_json, out, time_index=True)
        if name.endswith(SNAPSHOT_SUFFIX):
            return _dump_snapshot(path, as_json, out)
    except OSError as exc:
        sys.stderr.write(f"cannot read {path}: {exc}\n")
        return 2
    sys.stderr.write(f"{path}: not a .log, .index, .timeindex or .snapshot file\n")
    return 2


def _show_bytes(value: bytes | None, key: str) -> dict[str, Any]:
    if value is None:
        return {key: None}
    try:
        return {key: value.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{key}_base64": base64.b64encode(value).decode()}


def _batch_fields(pos: int, h: BatchHeader, crc_ok: bool) -> dict[str, Any]:
    return {
        "position": pos,
        "size": h.batch_length + 12,
        "base_offset": h.base_offset,
        "last_offset": h.base_offset + h.last_offset_delta,
        "record_count": h.record_count,
        "base_timestamp": h.base_timestamp,
        "max_timestamp": h.max_timestamp,
        "crc": f"{h.crc:08x}",
        "crc_ok": crc_ok,
        "magic": h.magic,
        "compression": _COMPRESSION.get(h.compression, str(h.compression)),
        "leader_epoch": h.leader_epoch,
        "producer_id": h.producer_id,
        "producer_epoch": h.producer_epoch,
        "base_sequence": h.base_sequence,
    }


def _records(buf: mmap.mmap, pos: int, h: BatchHeader) -> list[dict[str, Any]]:
    out = []
    for offset, timestamp, key, value, headers in iter_records(buf, h, pos):
        rec: dict[str, Any] = {"offset": offset, "timestamp": timestamp}
        rec.update(_show_bytes(key, "key"))
        rec.update(_show_bytes(value, "value"))
        rec["headers"] = [{"key": hk, **_show_bytes(hv, "value")} for hk, hv in (headers or [])]
        out.append(rec)
    return out


#: Fields printed bare in text output; other strings (keys, values) are quoted.
_BARE = {"crc", "compression", "error"}


def _text_line(obj: dict[str, Any]) -> str:
    parts = []
    for k, v in obj.items():
        if k == "records":
            continue
        if k in _BARE or isinstance(v, bool | int):
            parts.append(f"{k}: {v}")
        else:
            parts.append(f"{k}: {json.dumps(v)}")
    return " ".join(parts)


def _dump_segment(path: str, base: int | None, records: bool, as_json: bool, out: TextIO) -> int:
    size = os.path.getsize(path)
    batches: list[dict[str, Any]] = []
    problem: dict[str, Any] | None = None
    end_note = ""
    rc = 0
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size else None
        try:
            pos = 0
            expected = base
            # a segment the log cleaner rewrote (its partition's checkpoint
            # says so) may hold batches with fewer records than offsets
            gaps = base is not None and base < read_checkpoint(os.path.dirname(path)).gaps_below
            while pos < size:
                assert mm is not None
                try:
                    h = validate_batch(
                        mm, pos, max_batch_bytes=2**31 - 1, end=size, allow_gaps=gaps
                    )
                    if expected is not None and h.base_offset != expected:
                        raise InvalidRecordError(
                            f"base offset {h.base_offset}, expected {expected}"
                        )
                except _BAD_BATCH as exc:
                    if zero_tail(mm, pos, size):
                        end_note = (
                            f"end of data at position {pos}: "
                            f"{size - pos} bytes of zero padding follow"
                        )
                    else:
                        problem = _describe_bad_batch(mm, pos, size, str(exc))
                        rc = 1
                    break
                obj = _batch_fields(pos, h, True)
                if records:
                    try:
                        obj["records"] = _records(mm, pos, h)
                    except InvalidRecordError as exc:
                        problem = {**obj, "error": f"records do not decode: {exc}"}
                        rc = 1
                        break
                batches.append(obj)
                pos += h.batch_length + 12
                expected = h.next_offset
            if not end_note and problem is None:
                end_note = f"end of data at position {pos}"
        finally:
            if mm is not None:
                mm.close()
    if as_json:
        out.write(json.dumps(batches + ([problem] if problem else []), indent=1) + "\n")
        return rc
    out.write(f"Dumping {path} ({size} bytes)\n")
    for obj in batches:
        out.write(_text_line(obj) + "\n")
        for rec in obj.get("records", []):
            out.write("  | " + _text_line(rec) + "\n")
    if problem is not None:
        out.write(f"CORRUPT: invalid batch at position {problem['position']}: {problem['error']}\n")
    else:
        out.write(end_note + "\n")
    return rc


def _describe_bad_batch(mm: mmap.mmap, pos: int, size: int, reason: str) -> dict[str, Any]:
    """What can be said about an invalid batch: its header fields when a
    whole header is there, the CRC verdict when its declared length fits."""
    if size - pos < HEADER_SIZE:
        return {"position": pos, "crc_ok": False, "error": reason}
    h = read_header(mm, pos)
    n = h.batch_length + 12
    crc_ok = (
        HEADER_SIZE <= n <= size - pos and crc32c.crc32c(mm[pos + CRC_START : pos + n]) == h.crc
    )
    return {**_batch_fields(pos, h, crc_ok), "error": reason}


def _dump_index(
    path: str, base: int | None, as_json: bool, out: TextIO, *, time_index: bool
) -> int:
    with open(path, "rb") as f:
        data = f.read()
    entry = TIME_ENTRY if time_index else OFFSET_ENTRY
    base_off = base or 0
    entries = []
    error = None
    if len(data) % entry.size:
        error = f"size {len(data)} is not a multiple of {entry.size}"
    prev: tuple[int, int] | None = None
    for i, fields in enumerate(entry.iter_unpack(data[: len(data) - len(data) % entry.size])):
        if time_index:
            ts, rel = fields
            obj = {"timestamp": ts, "relative_offset": rel, "offset": base_off + rel}
            ok = prev is None or (ts > prev[0] and rel >= prev[1])
            key = (ts, rel)
        else:
            rel, position = fields
            obj = {"relative_offset": rel, "offset": base_off + rel, "position": position}
            ok = (rel > 0 and position > 0) and (
                prev is None or (rel > prev[0] and position > prev[1])
            )
            key = (rel, position)
        entries.append(obj)
        if not ok and error is None:
            error = f"entry {i} breaks the index order (zeroed or damaged)"
        prev = key
    if as_json:
        out.write(json.dumps(entries + ([{"error": error}] if error else []), indent=1) + "\n")
    else:
        out.write(f"Dumping {path} ({len(entries)} entries)\n")
        for obj in entries:
            out.write(_text_line(obj) + "\n")
        if error:
            out.write(f"CORRUPT: {error}\n")
    return 1 if error else 0


def _dump_snapshot(path: str, as_json: bool, out: TextIO) -> int:
    with open(path, "rb") as f:
        data = f.read()
    try:
        state, offset = ProducerStateManager.from_snapshot(data, 1)
    except ValueError as exc:
        out.write((json.dumps([{"error": str(exc)}]) if as_json else f"CORRUPT: {exc}") + "\n")
        return 1
    producers = [
        {
            "producer_id": pid,
            "epoch": e.epoch,
            "last_timestamp": e.last_timestamp,
            "batches": [b._asdict() for b in e.batches],
        }
        for pid, e in state.producers.items()
    ]
    if as_json:
        out.write(json.dumps({"offset": offset, "producers": producers}, indent=1) + "\n")
    else:
        out.write(f"Dumping {path}: producer state below offset {offset}\n")
        for p in producers:
            out.write(_text_line(p) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailrace dump-log", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--records", action="store_true", help="also print every record")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    return max(dump_log(p, records=args.records, as_json=args.json) for p in args.paths)


if __name__ == "__main__":
    sys.exit(main())
