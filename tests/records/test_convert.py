"""batch_magics and down_convert: a run of stored batches for Kafka readers."""

from __future__ import annotations

import pytest
from batch_samples import build_with
from hypothesis import given, settings
from hypothesis import strategies as st

from tailrace.client.errors import CorruptRecordError, InvalidRecordError
from tailrace.client.records import (
    CODEC_LZ4,
    COMPRESSION_GZIP,
    batch_magics,
    build_batch,
    down_convert,
    iter_headers,
    iter_records,
    patch_base_offset,
    validate_batch,
)

MAX = 1 << 24


def _native(records, *, base, compression=0, producer=(-1, -1, -1), epoch=0) -> bytes:
    pid, pe, seq = producer
    buf = bytearray(
        build_batch(
            records, compression=compression, producer_id=pid, producer_epoch=pe, base_sequence=seq
        )
    )
    patch_base_offset(buf, 0, base, epoch)
    return bytes(buf)


def _kafka(base: int, builder="kafka-python-3", codec=0) -> bytes:
    buf = bytearray(build_with(builder, compression=codec))
    patch_base_offset(buf, 0, base, 0)
    return bytes(buf)


N1 = [
    (1_000, b"key", b"value", [("h", b"\x00\xff"), ("h2", b"")]),
    (990, None, b"", None),  # earlier than the first: a negative delta
    (1_005, b"", None, None),
]
N2 = [(2_000 + i, b"k%d" % i, b"x" * 100, None) for i in range(50)]


def _run() -> tuple[bytes, list]:
    parts = [
        _native(N1, base=10, producer=(4, 2, 100), epoch=3),
        _kafka(13, codec=CODEC_LZ4),
        _native(N2, base=17, compression=COMPRESSION_GZIP),
    ]
    return b"".join(parts), parts


def _decoded(buf: bytes) -> list:
    out = []
    for pos, h in iter_headers(buf):
        validate_batch(buf, pos, max_batch_bytes=MAX)
        out += list(iter_records(buf, h, pos))
    return out


def test_batch_magics_reads_headers_only():
    run, parts = _run()
    assert batch_magics(run) == {1, 2}
    assert batch_magics(parts[1]) == {2}
    assert batch_magics(parts[0] + parts[2]) == {1}
    assert batch_magics(b"") == set()
    assert batch_magics(run, len(parts[0]), len(parts[0]) + len(parts[1])) == {2}
    # a batch cut short still shows its magic once byte 16 is there
    assert batch_magics(parts[1] + parts[0][:17]) == {1, 2}
    assert batch_magics(parts[1] + parts[0][:16]) == {2}


def test_down_convert_round_trip_field_by_field():
    run, parts = _run()
    conv = down_convert(run)
    assert batch_magics(conv) == {2}
    stored = list(iter_headers(run))
    converted = list(iter_headers(conv))
    assert len(converted) == 3
    for (_p0, a), (_p1, b) in zip(stored, converted, strict=True):
        assert (b.base_offset, b.last_offset_delta, b.record_count) == (
            a.base_offset,
            a.last_offset_delta,
            a.record_count,
        )
        assert (b.base_timestamp, b.max_timestamp) == (a.base_timestamp, a.max_timestamp)
        assert (b.producer_id, b.producer_epoch, b.base_sequence) == (
            a.producer_id,
            a.producer_epoch,
            a.base_sequence,
        )
        assert b.leader_epoch == a.leader_epoch
        assert b.compression == (a.compression if a.magic == 2 else 0)  # uncompressed output
    # the magic-2 batch is copied through byte for byte
    p1 = converted[1][0]
    assert conv[p1 : p1 + converted[1][1].size] == parts[1]
    # every record: same offset, timestamp, key, value, headers
    assert _decoded(conv) == _decoded(run)
    recs = _decoded(conv)
    assert recs[0] == (10, 1_000, b"key", b"value", [("h", b"\x00\xff"), ("h2", b"")])
    assert recs[1] == (11, 990, None, b"", None)
    assert recs[2] == (12, 1_005, b"", None, None)
    assert [r[0] for r in recs] == list(range(10, 67))


def test_down_convert_independent_reader_agrees():
    # aiokafka's own MemoryRecords (a Kafka client's reader) reads the output
    from aiokafka.record.memory_records import MemoryRecords

    run, _ = _run()
    mr = MemoryRecords(down_convert(run))
    got = []
    while (b := mr.next_batch()) is not None:
        assert b.validate_crc()
        got += [(r.offset, r.timestamp, r.key, r.value, r.headers or None) for r in b]
    assert got == _decoded(run)


def test_down_convert_max_bytes_counts_converted_bytes():
    run, _parts = _run()
    whole = down_convert(run)
    sizes = [h.size for _p, h in iter_headers(whole)]
    assert down_convert(run, max_bytes=1) == whole[: sizes[0]]  # the first batch always
    assert down_convert(run, max_bytes=sizes[0] + sizes[1]) == whole[: sizes[0] + sizes[1]]
    assert down_convert(run, max_bytes=sizes[0] + sizes[1] - 1) == whole[: sizes[0]]
    assert down_convert(run, max_bytes=len(whole)) == whole


def test_down_convert_leaves_out_a_partial_last_batch():
    run, _parts = _run()
    cut = run[:-10]
    conv = down_convert(cut)
    assert len(list(iter_headers(conv))) == 2
    assert down_convert(run[:30]) == b""


def test_down_convert_refuses_a_corrupt_native_batch():
    run, parts = _run()
    bad = bytearray(run)
    bad[len(parts[0]) - 3] ^= 0x40  # inside the first (native) batch's records
    with pytest.raises(CorruptRecordError):
        down_convert(bytes(bad))
    unknown = bytearray(parts[0])
    unknown[16] = 7
    with pytest.raises(InvalidRecordError, match="magic"):
        down_convert(bytes(unknown))


def test_a_first_record_stamped_minus_one_keeps_its_timestamp():
    """Found by the property test below: aiokafka's Cython builder holds its
    first timestamp in -1 while unset, so a first record stamped -1 came
    back with the next record's timestamp after down-conversion."""
    native = _native([(-1, None, None, None), (0, None, b"v", None)], base=0)
    conv = down_convert(native)
    h = validate_batch(conv, max_batch_bytes=MAX)
    assert [(o, ts) for o, ts, *_ in iter_records(conv, h)] == [(0, -1), (1, 0)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**40), 2**41),
            st.none() | st.binary(max_size=20),
            st.none() | st.binary(max_size=200),
            st.none() | st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=3),
        ),
        min_size=1,
        max_size=30,
    ),
    st.integers(0, 2**40),
)
def test_down_convert_property(records, base):
    native = _native(records, base=base)
    conv = down_convert(native)
    h = validate_batch(conv, max_batch_bytes=MAX)
    assert h.magic == 2
    want = [
        (base + i, ts, key, value, [tuple(p) for p in headers] if headers else None)
        for i, (ts, key, value, headers) in enumerate(records)
    ]
    assert list(iter_records(conv, h)) == want
