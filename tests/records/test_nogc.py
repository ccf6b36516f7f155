"""The native decoder pauses cyclic garbage collection around its per-record
allocations (client/records/nogc.py) and always leaves it as it found it."""

from __future__ import annotations

import gc

import msgpack
import pytest

from tailrace.client.errors import InvalidRecordError
from tailrace.client.records import build_batch, native, read_header
from tailrace.client.records.nogc import no_collection


@pytest.fixture
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def _batch(count: int) -> bytes:
    return build_batch([(1_700_000_000_000 + i, None, b"v%d" % i, None) for i in range(count)])


def _decode_watching(monkeypatch, data: bytes) -> tuple[list[bool], tuple]:
    seen: list[bool] = []

    def unpackb(*args, **kwargs):
        seen.append(gc.isenabled())
        return msgpack.unpackb(*args, **kwargs)

    monkeypatch.setattr(native, "_unpackb", unpackb)
    h = read_header(data)
    return seen, native.columns(data, h, 0, 0, 1000)


def test_columns_decodes_with_the_collector_paused_and_restores_it(monkeypatch, collector_on):
    seen, (ts0, deltas, _keys, values, _headers) = _decode_watching(monkeypatch, _batch(3))
    assert seen == [False]
    assert gc.isenabled()
    assert ts0 == 1_700_000_000_000
    assert deltas == (0, 1, 2)
    assert values == (b"v0", b"v1", b"v2")


def test_columns_leaves_a_collector_the_application_turned_off_off(monkeypatch, collector_on):
    gc.disable()
    seen, _ = _decode_watching(monkeypatch, _batch(2))
    assert seen == [False]
    assert not gc.isenabled()


def test_a_batch_that_does_not_decode_restores_the_collector(monkeypatch, collector_on):
    data = bytearray(_batch(2))
    data[57:61] = (3).to_bytes(4, "big")  # record_count 3 against 2 records
    h = read_header(bytes(data))
    with pytest.raises(InvalidRecordError):
        native.columns(bytes(data), h, 0, 0, 1000)
    assert gc.isenabled()


def test_no_collection_nests_and_restores():
    was = gc.isenabled()
    gc.enable()
    try:
        with no_collection():
            assert not gc.isenabled()
            with no_collection():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the inner block found it off
        assert gc.isenabled()
    finally:
        if not was:
            gc.disable()
