"""The record-batch format: golden bytes, round trips, and every check."""

from __future__ import annotations

import struct

import crc32c
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailrace.client.errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError
from tailrace.client.records import (
    COMPRESSION_GZIP,
    CRC_START,
    HEADER_SIZE,
    MAGIC,
    build_batch,
    encode_batch,
    iter_headers,
    patch_base_offset,
    read_header,
    unpack_records,
    validate_batch,
)

MAX = 8 * 1024 * 1024

# Two records, keyed and unkeyed, one header; idempotent producer fields set.
GOLDEN = bytes.fromhex(
    "0000000000000000"  # base_offset 0
    "0000004f"  # batch_length 79 (91 - 12)
    "ffffffff"  # leader_epoch -1
    "01"  # magic 1
    "3e675a16"  # crc
    "0000"  # attributes: no compression
    "00000001"  # last_offset_delta 1
    "0000018bcfe56800"  # base_timestamp 1700000000000
    "0000018bcfe56805"  # max_timestamp 1700000000005
    "0000000000000007"  # producer_id 7
    "0001"  # producer_epoch 1
    "00000000"  # base_sequence 0
    "00000002"  # record_count 2
    "92"  # records: fixarray of 2
    "9400c4036b6579c40576616c75659192a168c40176"  # [0, b"key", b"value", [["h", b"v"]]]
    "9405c0c4027632c0"  # [5, nil, b"v2", nil]
)
GOLDEN_RECORDS = [
    (1700000000000, b"key", b"value", [("h", b"v")]),
    (1700000000005, None, b"v2", None),
]

# The same layout with a gzip body, as produced by zlib on Linux; decoding it
# must keep working whatever zlib later versions emit when encoding.
GOLDEN_GZIP = bytes.fromhex(
    "000000000000000000000054ffffffff017658824b0001000000000000018bcfe568000000018bcfe56800"
    "ffffffffffffffffffffffffffff000000011f8b08000000000000039b3885e1c011898cd49c9c7c054cf2"
    "0000687dabfd1f000000"
)


def test_build_batch_golden_bytes():
    built = build_batch(GOLDEN_RECORDS, producer_id=7, producer_epoch=1, base_sequence=0)
    assert built == GOLDEN


def test_golden_crc_covers_attributes_to_end():
    (stored,) = struct.unpack_from(">I", GOLDEN, 17)
    assert stored == crc32c.crc32c(GOLDEN[CRC_START:])
    assert GOLDEN[16] == MAGIC
    assert struct.unpack_from(">i", GOLDEN, 8)[0] == len(GOLDEN) - 12


def test_header_fields_of_golden_batch():
    h = validate_batch(GOLDEN, max_batch_bytes=MAX)
    assert h.base_offset == 0
    assert h.size == len(GOLDEN)
    assert h.record_count == 2
    assert h.last_offset_delta == 1
    assert (h.base_timestamp, h.max_timestamp) == (1700000000000, 1700000000005)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (7, 1, 0)
    assert h.compression == 0


def test_gzip_golden_decodes():
    h = validate_batch(GOLDEN_GZIP, max_batch_bytes=MAX)
    assert h.compression == COMPRESSION_GZIP
    assert unpack_records(GOLDEN_GZIP, h) == [[0, None, b"hello " * 4, None]]


def test_patch_base_offset_keeps_crc_valid():
    buf = bytearray(GOLDEN)
    patch_base_offset(buf, 0, 123456789, leader_epoch=0)
    h = validate_batch(buf, max_batch_bytes=MAX)
    assert h.base_offset == 123456789
    assert h.leader_epoch == 0
    assert h.last_offset == 123456790
    assert bytes(buf[8:12]) == GOLDEN[8:12]  # batch_length untouched
    assert bytes(buf[CRC_START:]) == GOLDEN[CRC_START:]


def test_flipped_bit_in_any_crc_byte_is_caught():
    for pos in range(CRC_START, len(GOLDEN)):
        for bit in range(8):
            buf = bytearray(GOLDEN)
            buf[pos] ^= 1 << bit
            with pytest.raises(CorruptRecordError):
                validate_batch(buf, max_batch_bytes=MAX)


def test_flipped_crc_field_is_caught():
    for pos in range(17, CRC_START):
        buf = bytearray(GOLDEN)
        buf[pos] ^= 0x10
        with pytest.raises(CorruptRecordError):
            validate_batch(buf, max_batch_bytes=MAX)


def test_bad_magic():
    for magic in (0, 3, 0x7F, 0xFF):
        buf = bytearray(GOLDEN)
        buf[16] = magic
        with pytest.raises(InvalidRecordError, match="magic"):
            validate_batch(buf, max_batch_bytes=MAX)


def test_native_batch_relabelled_magic_2_is_refused():
    # the magic byte is outside the CRC: msgpack records read as varint
    # records must fail the magic-2 record checks
    buf = bytearray(GOLDEN)
    buf[16] = 2
    with pytest.raises(InvalidRecordError):
        validate_batch(buf, max_batch_bytes=MAX)


def test_oversize_batch_refused_before_anything_else():
    with pytest.raises(RecordTooLargeError):
        validate_batch(GOLDEN, max_batch_bytes=len(GOLDEN) - 1)


@pytest.mark.parametrize("cut", [0, 1, 11, 12, HEADER_SIZE - 1, HEADER_SIZE, len(GOLDEN) - 1])
def test_truncated_batch(cut):
    with pytest.raises(InvalidRecordError, match="truncated"):
        validate_batch(GOLDEN[:cut], max_batch_bytes=MAX)


def test_length_below_minimum():
    buf = bytearray(GOLDEN)
    struct.pack_into(">i", buf, 8, 10)
    with pytest.raises(InvalidRecordError, match="minimum"):
        validate_batch(buf, max_batch_bytes=MAX)


def _rebuild(header_fields: dict, body: bytes) -> bytes:
    """A batch with chosen header fields and a correct CRC."""
    h = read_header(GOLDEN)._asdict()
    h.update(header_fields)
    h["batch_length"] = HEADER_SIZE - 12 + len(body)
    return encode_batch(
        body,
        h["record_count"],
        h["base_timestamp"],
        h["max_timestamp"],
        compression=h["attributes"],
        producer_id=h["producer_id"],
        producer_epoch=h["producer_epoch"],
        base_sequence=h["base_sequence"],
    )


def test_wrong_record_count_is_refused():
    body = msgpack.packb([[0, None, b"a", None]] * 3)
    with pytest.raises(InvalidRecordError, match="records array holds 3"):
        validate_batch(_rebuild({"record_count": 2}, body), max_batch_bytes=MAX)


def test_body_that_is_not_an_array_is_refused():
    body = msgpack.packb({"a": 1})
    with pytest.raises(InvalidRecordError):
        validate_batch(_rebuild({"record_count": 1}, body), max_batch_bytes=MAX)


def test_unknown_compression_is_refused():
    body = msgpack.packb([[0, None, b"a", None]])
    with pytest.raises(InvalidRecordError):
        validate_batch(_rebuild({"record_count": 1, "attributes": 5}, body), max_batch_bytes=MAX)


def test_log_append_time_bit_is_refused():
    body = msgpack.packb([[0, None, b"a", None]])
    with pytest.raises(InvalidRecordError, match="attributes"):
        validate_batch(_rebuild({"record_count": 1, "attributes": 8}, body), max_batch_bytes=MAX)


def test_gzip_body_that_does_not_inflate_is_refused():
    with pytest.raises(InvalidRecordError, match="gzip"):
        validate_batch(
            _rebuild({"record_count": 1, "attributes": 1}, b"not gzip at all"),
            max_batch_bytes=MAX,
        )


def test_build_rejects_empty_and_unknown_compression():
    with pytest.raises(ValueError, match="at least one"):
        build_batch([])
    with pytest.raises(ValueError, match="compression"):
        build_batch(GOLDEN_RECORDS, compression=3)


def test_iter_headers_walks_concatenated_batches_and_stops_at_a_partial_one():
    a = build_batch(GOLDEN_RECORDS)
    b = build_batch([(5, None, b"z", None)])
    buf = a + b + b[:20]
    positions = [pos for pos, _ in iter_headers(buf)]
    assert positions == [0, len(a)]


timestamps = st.integers(min_value=0, max_value=2**41)
blobs = st.one_of(st.none(), st.binary(max_size=64))
headers = st.one_of(
    st.none(), st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=8)), max_size=3)
)
records = st.lists(st.tuples(timestamps, blobs, blobs, headers), min_size=1, max_size=20)


@settings(max_examples=150, deadline=None)
@given(
    records=records,
    gzip=st.booleans(),
    base_offset=st.integers(min_value=0, max_value=2**62),
    producer=st.tuples(st.integers(0, 2**62), st.integers(0, 2**15 - 1), st.integers(0, 2**31 - 1)),
)
def test_round_trip(records, gzip, base_offset, producer):
    pid, epoch, seq = producer
    batch = bytearray(
        build_batch(
            records,
            compression=COMPRESSION_GZIP if gzip else 0,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
        )
    )
    patch_base_offset(batch, 0, base_offset)
    h = validate_batch(batch, max_batch_bytes=MAX)
    assert h.base_offset == base_offset
    assert h.record_count == len(records)
    assert h.max_timestamp == max(r[0] for r in records)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (pid, epoch, seq)
    decoded = unpack_records(batch, h)
    assert [
        (h.base_timestamp + d, k, v, None if hs is None else [tuple(x) for x in hs])
        for d, k, v, hs in decoded
    ] == [(t, k, v, None if hs is None else list(hs)) for t, k, v, hs in records]


@settings(max_examples=100, deadline=None)
@given(records=records, data=st.data())
def test_any_flipped_bit_in_crc_range_is_caught(records, data):
    batch = bytearray(build_batch(records))
    pos = data.draw(st.integers(min_value=CRC_START, max_value=len(batch) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    batch[pos] ^= 1 << bit
    with pytest.raises(CorruptRecordError):
        validate_batch(batch, max_batch_bytes=MAX)
