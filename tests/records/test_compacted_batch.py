"""Compacted magic-2 batches (docs/format.md, "Compacted batches"): what
the log cleaner writes, read by validate_batch(allow_gaps=True) and the
consumer's decode, refused on append."""

from __future__ import annotations

import pytest

from tailrace.client.consumer.record import RecordList, decode_batches
from tailrace.client.errors import CorruptRecordError, InvalidRecordError
from tailrace.client.records import (
    CODEC_GZIP,
    CODEC_NONE,
    CODEC_ZSTD,
    build_batch,
    build_kafka_batch,
    iter_records,
    patch_base_offset,
    read_header,
    validate_batch,
)
from tailrace.client.records.kafka import build_compacted

BIG = 1 << 30


def _records(n: int, base_ts: int = 1_700_000_000_000) -> list:
    return [
        (base_ts + i, b"k%d" % i, b"v%d" % i, [("h", b"x")] if i % 2 else None) for i in range(n)
    ]


def _compact(raw: bytes, keep) -> bytes:  # type: ignore[no-untyped-def]
    h = read_header(raw)
    kept = [r for r in iter_records(raw, h) if keep(r[0])]
    return build_compacted(h, kept, h.compression)


@pytest.mark.parametrize("codec", [CODEC_NONE, CODEC_GZIP, CODEC_ZSTD])
def test_compacted_batch_keeps_offsets_codec_and_producer_fields(codec: int) -> None:
    raw = bytearray(
        build_kafka_batch(
            _records(10), compression=codec, producer_id=5, producer_epoch=2, base_sequence=40
        )
    )
    patch_base_offset(raw, 0, 100, 3)
    out = _compact(bytes(raw), lambda off: (off - 100) % 3 == 1)
    h = validate_batch(out, max_batch_bytes=BIG, allow_gaps=True)
    assert (h.base_offset, h.last_offset_delta, h.record_count) == (100, 9, 3)
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.leader_epoch) == (5, 2, 40, 3)
    assert h.compression == codec
    got = list(iter_records(out, h))
    assert [r[0] for r in got] == [101, 104, 107]
    assert [r[2] for r in got] == [b"k1", b"k4", b"k7"]
    assert h.max_timestamp == got[-1][1]
    assert h.base_timestamp == got[0][1]
    with pytest.raises(InvalidRecordError):
        validate_batch(out, max_batch_bytes=BIG)  # an append never takes gaps


def test_native_batch_that_loses_records_becomes_magic_2_with_the_same_codec() -> None:
    raw = build_batch([(ts, k, v, h) for ts, k, v, h in _records(6)], compression=1, producer_id=-1)
    out = _compact(raw, lambda off: off in (0, 5))
    h = validate_batch(out, max_batch_bytes=BIG, allow_gaps=True)
    assert h.magic == 2
    assert h.compression == CODEC_GZIP
    assert h.last_offset_delta == 5
    assert [(r[0], r[3]) for r in iter_records(out, h)] == [(0, b"v0"), (5, b"v5")]


def test_empty_batch_is_a_header_with_the_producer_sequence() -> None:
    raw = build_kafka_batch(
        _records(4), compression=CODEC_GZIP, producer_id=9, producer_epoch=0, base_sequence=8
    )
    out = _compact(raw, lambda off: False)
    assert len(out) == 61
    h = validate_batch(out, max_batch_bytes=BIG, allow_gaps=True)
    assert (h.record_count, h.last_offset_delta, h.base_sequence, h.compression) == (0, 3, 8, 0)
    assert h.max_timestamp == read_header(raw).max_timestamp
    assert list(iter_records(out, h)) == []
    with pytest.raises(InvalidRecordError):
        validate_batch(out, max_batch_bytes=BIG)


def _run(*batches: tuple[bytes, int]) -> memoryview:
    parts = []
    for raw, base in batches:
        b = bytearray(raw)
        patch_base_offset(b, 0, base)
        parts.append(bytes(b))
    return memoryview(b"".join(parts))


def test_consumer_reads_gaps_and_empty_batches_by_the_records_offsets() -> None:
    a = build_batch([(ts, k, v, h) for ts, k, v, h in _records(5)])  # 0..4, dense native
    b = _compact(bytes(build_kafka_batch(_records(5))), lambda off: off in (1, 3))  # 5..9
    c = _compact(bytes(build_kafka_batch(_records(3))), lambda off: False)  # 10..12, empty
    d = build_kafka_batch(_records(2))  # 13..14
    data = _run((a, 0), (b, 5), (c, 10), (d, 13))
    out: list[tuple] = []
    used, next_offset, n = decode_batches("t", 0, data, 0, out, 1000)
    recs = list(RecordList(out))
    assert [r.offset for r in recs] == [0, 1, 2, 3, 4, 6, 8, 13, 14]
    assert [r.key for r in recs][5:7] == [b"k1", b"k3"]
    assert (used, next_offset, n) == (len(data), 15, 9)
    assert RecordList(out)[6].offset == 8
    # resuming inside the compacted batch: by offset, not by index
    out = []
    rest = _run((b, 5), (c, 10), (d, 13))
    _u, next_offset, n = decode_batches("t", 0, rest, 7, out, 1)
    assert [r.offset for r in RecordList(out)] == [8]
    assert next_offset == 9
    # a first batch that does not hold the offset asked for is not what a broker sends
    with pytest.raises(CorruptRecordError, match=r"claims offsets 0\.\.4"):
        decode_batches("t", 0, data, 7, [], 1)
    # nor a gap between batches: compaction keeps them contiguous (a base
    # offset damaged at rest, outside the CRC, looks like this)
    with pytest.raises(CorruptRecordError, match=r"claims offsets 20\.\.21, expected 13"):
        decode_batches("t", 0, _run((c, 10), (d, 20)), 10, [], 10)
    # a limit that stops inside a compacted batch resumes after the record taken
    out = []
    _u, next_offset, n = decode_batches("t", 0, _run((b, 5)), 5, out, 1)
    assert [r.offset for r in RecordList(out)] == [6]
    assert next_offset == 7


def test_consumer_refuses_overlapping_or_gapped_batches() -> None:
    a = build_batch([(ts, k, v, h) for ts, k, v, h in _records(5)])
    data = _run((a, 0), (a, 3))
    out: list[tuple] = []
    _used, next_offset, n = decode_batches("t", 0, data, 0, out, 1000)
    assert n == 5  # the good batch first, then it stops at the overlap
    assert next_offset == 5
    empty = _compact(bytes(build_kafka_batch(_records(3))), lambda off: False)  # 0..2
    with pytest.raises(CorruptRecordError, match=r"claims offsets 1\.\.5, expected 3"):
        decode_batches("t", 0, _run((empty, 0), (a, 1)), 0, [], 1000)
