"""Segment files, index bytes and the read path, through real files."""

from __future__ import annotations

import os
import struct

import pytest
from log_helpers import batch, config, open_log, read_records

from tailrace.broker.log.segment import Segment
from tailrace.client.errors import (
    InvalidRecordError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from tailrace.client.records import HEADER_SIZE, iter_headers, read_header


def _batch_starts(log) -> dict[int, list[tuple[int, int, int]]]:
    """segment base -> [(position, base offset, last offset)] from the files."""
    out = {}
    for seg in log.segments:
        with open(seg.log_path, "rb") as f:
            data = f.read()[: seg.size]
        out[seg.base_offset] = [(p, h.base_offset, h.last_offset) for p, h in iter_headers(data)]
    return out


def test_file_names_are_20_digit_base_offsets(tmp_path):
    log = open_log(tmp_path / "t" / "0", config(segment_bytes=300))
    for _ in range(4):
        log.append(batch(1, size=100))  # 168-byte batches: one per segment
    assert log.close()
    names = sorted(os.listdir(tmp_path / "t" / "0"))
    assert names == [
        f"{base:020d}{suffix}"
        for base in (0, 1, 2, 3)
        for suffix in (".index", ".log", ".timeindex")
    ]
    assert "00000000000000000002.log" in names


def test_index_and_timeindex_bytes_are_golden(tmp_path):
    # interval 0: every batch but the first gets an entry; each batch is 108
    # bytes; timestamps grow by 10 per batch so each entry adds a time entry.
    log = open_log(tmp_path / "p", config(index_interval_bytes=0, segment_bytes=1 << 20))
    for k in range(4):
        assert len(batch(1, ts=1000 + 10 * k)) == 108
        log.append(batch(1, ts=1000 + 10 * k))
    assert log.close()
    with open(tmp_path / "p" / "00000000000000000000.index", "rb") as f:
        assert f.read() == bytes.fromhex(
            "00000001 0000006c"  # offset 1 at byte 108
            "00000002 000000d8"  # offset 2 at byte 216
            "00000003 00000144"  # offset 3 at byte 324
        )
    with open(tmp_path / "p" / "00000000000000000000.timeindex", "rb") as f:
        assert f.read() == bytes.fromhex(
            "00000000000003f2 00000001"  # ts 1010, offset 1
            "00000000000003fc 00000002"  # ts 1020, offset 2
            "0000000000000406 00000003"  # ts 1030, offset 3
        )


def test_close_adds_the_final_time_entry(tmp_path):
    # interval large: no offset entry at all; close records the max timestamp.
    log = open_log(tmp_path / "p", config(index_interval_bytes=10_000, segment_bytes=1 << 20))
    log.append(batch(2, ts=5000))
    assert log.close()
    with open(tmp_path / "p" / "00000000000000000000.timeindex", "rb") as f:
        assert f.read() == struct.pack(">qI", 5001, 1)
    assert os.path.getsize(tmp_path / "p" / "00000000000000000000.index") == 0


def test_append_patches_offset_and_epoch_in_place(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=1 << 20))
    originals = [batch(3, ts=1000 + k, size=30 + k) for k in range(5)]
    results = [log.append(b) for b in originals]
    assert [(r.base_offset, r.last_offset) for r in results] == [
        (3 * k, 3 * k + 2) for k in range(5)
    ]
    assert log.close()
    with open(tmp_path / "p" / "00000000000000000000.log", "rb") as f:
        data = f.read()
    pos = 0
    for k, orig in enumerate(originals):
        stored = data[pos : pos + len(orig)]
        assert read_header(stored).base_offset == 3 * k
        assert read_header(stored).leader_epoch == 0
        assert read_header(orig).leader_epoch == -1
        assert stored[8:12] == orig[8:12]  # batch_length untouched
        assert stored[16:] == orig[16:]  # magic, CRC and body byte-identical
        pos += len(orig)
    assert pos == len(data)


def test_round_trip_across_rolls_and_reopen(tmp_path):
    log = open_log(tmp_path / "p")
    expected = []
    for k in range(60):
        values = [f"v{k}-{i}".encode() * (1 + (k * 7 + i) % 13) for i in range(1 + k % 4)]
        r = log.append(batch(values, ts=1000 + k))
        expected += [(r.base_offset + i, v) for i, v in enumerate(values)]
    assert len(log.segments) >= 5
    assert read_records(log) == expected
    assert log.close()
    log = open_log(tmp_path / "p", clean=True)
    assert read_records(log) == expected
    assert read_records(log, start=77) == expected[77:]
    log.close()


def test_every_offset_reads_from_the_batch_holding_it(tmp_path):
    log = open_log(tmp_path / "p", config(index_interval_bytes=150))
    for k in range(40):
        log.append(batch(1 + k % 5, size=10 + 9 * k % 70))
    starts = _batch_starts(log)
    all_starts = {(base, p): (b, last) for base, rows in starts.items() for p, b, last in rows}
    for offset in range(log.high_watermark):
        s = log.read(offset, 1 << 20)
        seg_base = max(b for b in starts if b <= offset)
        with s:
            first, last = all_starts[(seg_base, s.position)]  # a batch boundary
            assert first == s.first_offset <= offset <= last
            # whole batches up to the end of that segment
            data = s.read_bytes()
            walked = list(iter_headers(data))
            assert sum(h.size for _p, h in walked) == s.length
            assert walked[-1][1].last_offset == s.last_offset
    log.close()


def test_max_bytes_gives_whole_batches_and_always_the_first(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=1 << 20, index_interval_bytes=100))
    sizes = [len(log_b) for log_b in (batch(1, size=200 + 37 * k) for k in range(12))]
    for k in range(12):
        log.append(batch(1, size=200 + 37 * k))
    # max_bytes smaller than the first batch: that batch, whole
    s = log.read(0, 10)
    assert (s.position, s.length, s.first_offset, s.last_offset) == (0, sizes[0], 0, 0)
    s.release()
    for max_bytes in (sizes[0], sizes[0] + sizes[1] - 1, sizes[0] + sizes[1], 1500, 10**6):
        with log.read(0, max_bytes) as s:
            n = 0
            total = 0
            while n < len(sizes) and total + sizes[n] <= max(max_bytes, sizes[0]):
                total += sizes[n]
                n += 1
            assert (s.length, s.last_offset) == (total, n - 1)
            assert s.read_bytes()[:HEADER_SIZE] == s.read_bytes()[:HEADER_SIZE]
    log.close()


def test_read_bounds(tmp_path):
    log = open_log(tmp_path / "p", config(flush="sync"))
    log.append(batch(3))
    # sync mode: appended but not durable, so not visible
    assert log.high_watermark == 0
    assert log.read(0, 100) is None
    assert log.read(3, 100) is None  # exactly the log end
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100)
    log.close()


def test_bad_input_changes_nothing(tmp_path):
    log = open_log(tmp_path / "p", config(max_batch_bytes=500))
    good = batch(2)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    cases = [
        (b"", InvalidRecordError),
        (good + good[:30], InvalidRecordError),  # truncated second batch
        (good + bytes(bad_crc), Exception),  # CRC error in the second batch
        (batch(1, size=600), RecordTooLargeError),
        (good[:16] + b"\x07" + good[17:], InvalidRecordError),  # bad magic
    ]
    for records, exc in cases:
        with pytest.raises(exc):
            log.append(records)
        assert log.log_end_offset == 0
        assert log.segments[-1].size == 0
    assert log.append(good + good).last_offset == 3
    log.close()


def test_idle_partition_preallocates_nothing(tmp_path):
    log = open_log(tmp_path / "p", config(preallocate_bytes=1 << 20, segment_bytes=1 << 24))
    sizes = {n: os.path.getsize(tmp_path / "p" / n) for n in os.listdir(tmp_path / "p")}
    assert sizes == {f"{0:020d}{s}": 0 for s in (".log", ".index", ".timeindex")}
    assert log.segments[0].fd == -1
    log.append(batch(1))
    st = os.stat(tmp_path / "p" / f"{0:020d}.log")
    assert st.st_size == 1 << 20  # preallocated step...
    assert st.st_blocks * 512 >= st.st_size  # ...with real blocks, not a sparse hole
    log.close()
    assert os.path.getsize(tmp_path / "p" / f"{0:020d}.log") == len(batch(1))


def test_batches_spanning_mmap_windows(tmp_path):
    # 4 KiB windows, ~1.5 KiB batches: most batches straddle two windows.
    log = open_log(tmp_path / "p", config(segment_bytes=1 << 20, preallocate_bytes=4096))
    values = [bytes([k]) * (1400 + k) for k in range(30)]
    for v in values:
        log.append(batch([v]))
    assert [v for _o, v in read_records(log)] == values
    log.close()
    log = open_log(
        tmp_path / "p", config(segment_bytes=1 << 20, preallocate_bytes=4096), clean=True
    )
    log.append(batch([b"after reopen"]))  # maps from an unaligned data end
    assert [v for _o, v in read_records(log)] == [*values, b"after reopen"]
    log.close()


def test_rolls_on_time_index_capacity_and_offset_overflow(tmp_path):
    # segment_ms: a batch whose max timestamp is more than segment_ms past the
    # first batch of the segment starts a new segment.
    log = open_log(tmp_path / "a", config(segment_bytes=1 << 20, segment_ms=1000))
    log.append(batch(1, ts=10_000))
    log.append(batch(1, ts=10_900))
    assert len(log.segments) == 1
    log.append(batch(1, ts=11_001))
    assert [s.base_offset for s in log.segments] == [0, 2]
    log.close()
    # a full index (24 bytes = 3 offset entries, 2 time entries minus the
    # reserved final slot) rolls
    log = open_log(
        tmp_path / "b",
        config(segment_bytes=1 << 20, segment_index_bytes=24, index_interval_bytes=0),
    )
    for k in range(6):
        log.append(batch(1, ts=1000 + k))
    assert len(log.segments) > 1
    assert [o for o, _v in read_records(log)] == list(range(6))
    log.close()


async def test_reads_stop_at_the_high_watermark(tmp_path):
    log = open_log(tmp_path / "p", config(flush="sync", segment_bytes=1 << 20))
    first = batch(3)
    await log.wait_durable(log.append(first))
    log.append(batch(2))  # appended, not yet durable
    assert (log.high_watermark, log.log_end_offset) == (3, 5)
    with log.read(0, 1 << 20) as s:
        assert (s.position, s.length, s.first_offset, s.last_offset) == (0, len(first), 0, 2)
    for offset in (3, 4, 5):  # at the HW, between HW and log end, at the log end
        assert log.read(offset, 1 << 20) is None
    with pytest.raises(OffsetOutOfRangeError):
        log.read(6, 100)
    await log.flush()
    with log.read(3, 1 << 20) as s:
        assert (s.first_offset, s.last_offset) == (3, 4)
    await log.aclose()


def test_a_read_at_a_recent_batch_needs_no_header_walk(tmp_path, monkeypatch):
    # a caught-up consumer fetches at the start of a batch just appended: the
    # active segment remembers where its latest appends put each batch
    log = open_log(tmp_path / "p", config(index_interval_bytes=150))
    starts = []
    for k in range(12):
        starts.append(log.high_watermark)
        log.append(batch(1 + k % 3, size=30))
    expected = {}
    for offset in starts:
        with log.read(offset, 1 << 20) as s:
            expected[offset] = (s.position, s.first_offset, s.length, s.read_bytes())

    def no_walk(*args, **kwargs):
        raise AssertionError("walked the batch headers")

    monkeypatch.setattr(Segment, "walk", no_walk)
    for offset in starts:
        with log.read(offset, 1 << 20) as s:
            assert (s.position, s.first_offset, s.length, s.read_bytes()) == expected[offset]
        assert log.available_bytes(log.position_of(offset)) == expected[offset][2]
    # an offset inside a batch is not a batch start: the ordinary lookup
    with pytest.raises(AssertionError, match="walked"):
        log.read(starts[-1] + 1, 1 << 20)
    monkeypatch.undo()
    log.close()
    # reopened (recovery), the segment remembers nothing and walks
    log = open_log(tmp_path / "p", config(index_interval_bytes=150))
    for offset in starts:
        with log.read(offset, 1 << 20) as s:
            assert (s.position, s.first_offset, s.length, s.read_bytes()) == expected[offset]
    log.close()
