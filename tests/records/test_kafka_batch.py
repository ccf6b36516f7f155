"""Magic 2 (Kafka's RecordBatch v2): golden bytes, batches from independent
builders with every codec, and every refusal with its typed error."""

from __future__ import annotations

import struct

import pytest
from batch_samples import (
    BUILDERS,
    RECORDS,
    build_with,
    compressed_records_batch,
    recrc,
    set_header,
    with_body,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailrace.client.errors import (
    CorruptRecordError,
    ErrorCode,
    InvalidRecordError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from tailrace.client.records import (
    CODEC_GZIP,
    CODEC_LZ4,
    CODEC_NONE,
    CODEC_SNAPPY,
    CODEC_ZSTD,
    CRC_START,
    FORMATS,
    HEADER_SIZE,
    MAGIC_KAFKA,
    build_kafka_batch,
    iter_records,
    patch_base_offset,
    validate_batch,
)
from tailrace.client.records.compression import compress, decompress

MAX = 8 * 1024 * 1024
CODECS = [CODEC_NONE, CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD]
TYPED = (
    InvalidRecordError,
    CorruptRecordError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

# The native golden batch's records as Kafka writes them: two records, keyed
# and unkeyed, one header; idempotent producer fields set.
GOLDEN = bytes.fromhex(
    "0000000000000000"  # base_offset 0
    "0000004d"  # batch_length 77 (89 - 12)
    "ffffffff"  # leader_epoch -1
    "02"  # magic 2
    "09f4e240"  # crc
    "0000"  # attributes: no compression, create time
    "00000001"  # last_offset_delta 1
    "0000018bcfe56800"  # base_timestamp 1700000000000
    "0000018bcfe56805"  # max_timestamp 1700000000005
    "0000000000000007"  # producer_id 7
    "0001"  # producer_epoch 1
    "00000000"  # base_sequence 0
    "00000002"  # record_count 2
    # record 0: length 18, attrs 0, ts delta 0, offset delta 0, key "key",
    # value "value", 1 header ("h", "v")   (varints zig-zag: 0x24 = 18)
    "24"
    "00"
    "00"
    "00"
    "06"
    "6b6579"
    "0a"
    "76616c7565"
    "02"
    "02"
    "68"
    "02"
    "76"
    # record 1: length 8, attrs 0, ts delta 5, offset delta 1, key null,
    # value "v2", no headers
    "10"
    "00"
    "0a"
    "02"
    "01"
    "04"
    "7632"
    "00"
)
GOLDEN_RECORDS = [
    (1700000000000, b"key", b"value", [("h", b"v")]),
    (1700000000005, None, b"v2", None),
]


def _expected(records, base=0):
    return [
        (base + i, ts, key, value, list(headers) or None)
        for i, (ts, key, value, headers) in enumerate(records)
    ]


def test_formats_table():
    assert sorted(FORMATS) == [1, 2]
    assert FORMATS[MAGIC_KAFKA].name == "kafka"


def test_build_golden_bytes():
    built = build_kafka_batch(GOLDEN_RECORDS, producer_id=7, producer_epoch=1, base_sequence=0)
    assert bytes(built) == GOLDEN


def test_golden_decodes_field_by_field():
    h = validate_batch(GOLDEN, max_batch_bytes=MAX)
    assert (h.magic, h.record_count, h.last_offset_delta, h.compression) == (2, 2, 1, 0)
    assert (h.base_timestamp, h.max_timestamp) == (1700000000000, 1700000000005)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (7, 1, 0)
    assert list(iter_records(GOLDEN, h)) == [
        (0, 1700000000000, b"key", b"value", [("h", b"v")]),
        (1, 1700000000005, None, b"v2", None),
    ]


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("codec", CODECS)
def test_independent_builders_validate_and_decode(builder, codec):
    batch = build_with(builder, compression=codec, producer=(42, 3, 1000))
    h = validate_batch(batch, max_batch_bytes=MAX)
    assert h.compression == codec
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (42, 3, 1000)
    assert h.max_timestamp == max(r[0] for r in RECORDS)
    assert list(iter_records(batch, h)) == _expected(RECORDS)


@pytest.mark.parametrize("xerial", [True, False])
def test_snappy_raw_and_xerial_framing(xerial):
    batch = compressed_records_batch(CODEC_SNAPPY, xerial=xerial)
    assert (batch[HEADER_SIZE : HEADER_SIZE + 8] == b"\x82SNAPPY\x00") is xerial
    h = validate_batch(batch, max_batch_bytes=MAX)
    assert list(iter_records(batch, h)) == _expected(RECORDS)


def test_xerial_snappy_of_many_blocks():
    records = [(1_000 + i, None, bytes([i % 256]) * 1000, []) for i in range(100)]
    plain = build_kafka_batch(records)
    body = compress(CODEC_SNAPPY, bytes(plain[HEADER_SIZE:]))  # 32 KiB blocks
    assert struct.unpack_from(">i", body, 16)[0] < len(body) - 20  # more than one block
    batch = with_body(bytes(plain), body, codec=CODEC_SNAPPY)
    h = validate_batch(batch, max_batch_bytes=MAX)
    assert [r[3] for r in iter_records(batch, h)] == [r[2] for r in records]


def test_patched_base_offset_and_epoch_keep_it_valid():
    buf = bytearray(build_with("kafka-python-3", compression=CODEC_LZ4))
    patch_base_offset(buf, 0, 5_000, leader_epoch=0)
    h = validate_batch(buf, max_batch_bytes=MAX)
    assert [r[0] for r in iter_records(buf, h)] == [5_000, 5_001, 5_002, 5_003]


# ------------------------------------------------------------------ refusals


def test_transactional_refused_with_unsupported_for_message_format():
    b = _transactional_batch()
    with pytest.raises(UnsupportedForMessageFormatError) as info:
        validate_batch(b, max_batch_bytes=MAX)
    assert info.value.code == ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT == 43


def _transactional_batch() -> bytes:
    from aiokafka.record._crecords import DefaultRecordBatchBuilder

    b = DefaultRecordBatchBuilder(2, 0, 1, 5, 0, 0, 1 << 20)
    b.append(0, 1000, None, b"v", [])
    return bytes(b.build())


@pytest.mark.parametrize(
    ("bits", "error", "match"),
    [
        (0x20, InvalidRecordError, "control"),
        (0x30, InvalidRecordError, "control"),
        (0x08, InvalidRecordError, "log-append"),
        (0x40, InvalidRecordError, "attributes"),
        (0x4000, InvalidRecordError, "attributes"),
        (0x05, InvalidRecordError, "codec"),
        (0x07, InvalidRecordError, "codec"),
    ],
)
def test_attribute_refusals(bits, error, match):
    batch = set_header(GOLDEN, ">h", 21, bits)
    with pytest.raises(error, match=match):
        validate_batch(batch, max_batch_bytes=MAX)


@pytest.mark.parametrize(
    ("pid", "epoch", "seq"),
    [(-1, 0, -1), (-1, -1, 0), (5, -1, 0), (5, 0, -1), (-2, -1, -1), (-7, 0, 0)],
)
def test_inconsistent_producer_fields_refused(pid, epoch, seq):
    out = bytearray(GOLDEN)
    struct.pack_into(">qhi", out, 43, pid, epoch, seq)
    with pytest.raises(InvalidRecordError, match="producer"):
        validate_batch(recrc(out), max_batch_bytes=MAX)


def test_record_count_checked_against_records():
    more = bytearray(GOLDEN)
    struct.pack_into(">i", more, 23, 2)  # last_offset_delta
    struct.pack_into(">i", more, 57, 3)  # record_count: one more than present
    with pytest.raises(InvalidRecordError):
        validate_batch(recrc(more), max_batch_bytes=MAX)
    fewer = bytearray(GOLDEN)
    struct.pack_into(">i", fewer, 23, 0)
    struct.pack_into(">i", fewer, 57, 1)  # one record fewer: bytes left over
    with pytest.raises(InvalidRecordError):
        validate_batch(recrc(fewer), max_batch_bytes=MAX)
    disagree = set_header(GOLDEN, ">i", 23, 5)
    with pytest.raises(InvalidRecordError, match="last_offset_delta"):
        validate_batch(disagree, max_batch_bytes=MAX)


def test_record_count_checked_after_decompression():
    for codec in (CODEC_GZIP, CODEC_ZSTD):
        batch = build_with("aiokafka-cython", compression=codec)
        out = bytearray(batch)
        struct.pack_into(">i", out, 23, 4)
        struct.pack_into(">i", out, 57, 5)
        with pytest.raises(InvalidRecordError):
            validate_batch(recrc(out), max_batch_bytes=MAX)


def test_trailing_bytes_after_the_records_refused():
    with pytest.raises(InvalidRecordError):
        validate_batch(with_body(GOLDEN, GOLDEN[HEADER_SIZE:] + b"\x00"), max_batch_bytes=MAX)


def test_offset_deltas_must_be_dense():
    from aiokafka.record._crecords import DefaultRecordBatchBuilder

    b = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    b.append(1, 1000, None, b"a", [])
    b.append(1, 1000, None, b"b", [])  # deltas 1, 1: last delta 1, count 2
    with pytest.raises(InvalidRecordError, match="offset deltas"):
        validate_batch(bytes(b.build()), max_batch_bytes=MAX)


def test_max_timestamp_must_be_the_largest_record_timestamp():
    for wrong in (1700000000004, 1700000000006, -1):
        with pytest.raises(InvalidRecordError, match="max_timestamp"):
            validate_batch(set_header(GOLDEN, ">q", 35, wrong), max_batch_bytes=MAX)


def test_crc_and_length_checks_shared_with_native():
    for pos in range(CRC_START, len(GOLDEN), 7):
        buf = bytearray(GOLDEN)
        buf[pos] ^= 0x01
        with pytest.raises(CorruptRecordError):
            validate_batch(buf, max_batch_bytes=MAX)
    with pytest.raises(InvalidRecordError, match="truncated"):
        validate_batch(GOLDEN[:-1], max_batch_bytes=MAX)
    with pytest.raises(RecordTooLargeError):
        validate_batch(GOLDEN, max_batch_bytes=len(GOLDEN) - 1)


def test_bad_header_name_utf8_refused():
    body = bytearray(GOLDEN[HEADER_SIZE:])
    i = body.index(b"\x02\x68\x02\x76")
    body[i + 1] = 0xFF  # header name "h" -> invalid UTF-8
    with pytest.raises(InvalidRecordError, match="UTF-8"):
        validate_batch(with_body(GOLDEN, bytes(body)), max_batch_bytes=MAX)


@pytest.mark.parametrize("codec", [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD])
def test_decompression_bomb_refused_before_it_inflates(codec):
    bomb = compress(codec, bytes(2 * 1024 * 1024))
    batch = with_body(GOLDEN, bomb, codec=codec)
    assert len(batch) < 200 * 1024
    with pytest.raises(RecordTooLargeError, match="inflates past"):
        validate_batch(batch, max_batch_bytes=MAX, max_decompressed_bytes=1024 * 1024)


def test_raw_snappy_bomb_refused_from_its_declared_length():
    bomb = compress(CODEC_SNAPPY, bytes(2 * 1024 * 1024), xerial=False)
    with pytest.raises(RecordTooLargeError):
        decompress(CODEC_SNAPPY, bomb, 1024 * 1024)


def test_default_decompression_bound():
    bomb = compress(CODEC_ZSTD, bytes(64 * 1024 * 1024 + 1))
    with pytest.raises(RecordTooLargeError, match="67108864"):
        validate_batch(with_body(GOLDEN, bomb, codec=CODEC_ZSTD), max_batch_bytes=MAX)


@pytest.mark.parametrize("codec", [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD])
def test_garbage_compressed_body_is_invalid(codec):
    for garbage in (
        b"",
        b"\x00",
        b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x7f\xff",
        b"\xff" * 64,
    ):
        with pytest.raises(InvalidRecordError):
            validate_batch(with_body(GOLDEN, garbage, codec=codec), max_batch_bytes=MAX)


@pytest.mark.parametrize("codec", [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD])
def test_truncated_compressed_body_is_invalid(codec):
    batch = build_with("aiokafka-cython", compression=codec)
    body = batch[HEADER_SIZE:]
    for cut in (1, len(body) // 2, len(body) - 1):
        with pytest.raises(InvalidRecordError):
            validate_batch(with_body(batch, body[:cut]), max_batch_bytes=MAX)


def _samples() -> list[bytes]:
    return [GOLDEN] + [build_with("aiokafka-cython", compression=c) for c in CODECS]


SAMPLES = _samples()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.integers(0, len(SAMPLES) - 1),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
    fix_crc=st.booleans(),
)
def test_mutated_batches_refused_with_typed_errors(sample, edits, fix_crc):
    """Any byte changed after the CRC field: refused with one of the typed
    errors, or (a change the format cannot see, e.g. inside a value) accepted
    and then decoded in full. Nothing else escapes."""
    buf = bytearray(SAMPLES[sample])
    for where, xor in edits:
        buf[CRC_START + where % (len(buf) - CRC_START)] ^= xor
    if fix_crc:
        buf = recrc(buf)
    try:
        h = validate_batch(buf, max_batch_bytes=MAX, max_decompressed_bytes=1 << 20)
    except TYPED:
        return
    assert fix_crc or buf == SAMPLES[sample], "a changed byte passed the CRC"
    assert len(list(iter_records(buf, h))) == h.record_count


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), codec=st.sampled_from(CODECS), count=st.integers(1, 5))
def test_random_record_sections_refused_with_typed_errors(body, codec, count):
    buf = bytearray(GOLDEN[:HEADER_SIZE]) + body
    struct.pack_into(">i", buf, 23, count - 1)
    struct.pack_into(">i", buf, 57, count)
    struct.pack_into(">h", buf, 21, codec)
    buf = recrc(buf)
    try:
        h = validate_batch(buf, max_batch_bytes=MAX, max_decompressed_bytes=1 << 20)
    except TYPED:
        return
    assert len(list(iter_records(buf, h))) == count


def test_importing_the_broker_does_not_import_aiokafka():
    """The codec is imported on first magic-2 use (records.kafka.load_codec):
    a broker or client that never meets one does not pay for aiokafka's
    package import. A client alone does not import asyncio either (the
    broker does: kio, the Kafka listener's schema library, imports it)."""
    import subprocess
    import sys

    check = (
        "from tailrace.client.records import validate_batch, build_batch;"
        "validate_batch(build_batch([(0, None, b'v', None)]), max_batch_bytes=1 << 20);"
        "assert 'aiokafka' not in sys.modules, 'aiokafka imported';"
    )
    client = (
        "import sys, tailrace.client;"
        + check
        + ("assert 'asyncio' not in sys.modules, 'asyncio imported';")
    )
    broker = (
        "import sys, tailrace.broker.app, tailrace.client;"
        + check
        + (
            "from tailrace.client.records import load_codec; load_codec();"
            "assert 'aiokafka' in sys.modules"
        )
    )
    for code in (client, broker):
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_xerial_framing_errors():
    header = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    block = compress(CODEC_SNAPPY, b"abc" * 100, xerial=False)
    assert bytes(
        decompress(CODEC_SNAPPY, header + struct.pack(">i", len(block)) + block, 1000)
    ) == (b"abc" * 100)
    for bad in (
        header[:12],  # header cut short
        header + b"\x00\x00",  # block length cut short
        header + struct.pack(">i", len(block) + 1) + block,  # block overruns the body
        header + struct.pack(">i", -1) + block,
    ):
        with pytest.raises(InvalidRecordError):
            decompress(CODEC_SNAPPY, bad, 1000)
    # the limit counts across blocks
    two = header + (struct.pack(">i", len(block)) + block) * 2
    with pytest.raises(RecordTooLargeError):
        decompress(CODEC_SNAPPY, two, 500)


def test_huge_declared_record_count_fails_without_allocating_for_it():
    out = bytearray(GOLDEN)
    struct.pack_into(">i", out, 23, 2**31 - 2)
    struct.pack_into(">i", out, 57, 2**31 - 1)
    with pytest.raises(InvalidRecordError):
        validate_batch(recrc(out), max_batch_bytes=MAX)
