"""The leader-epoch checkpoint on disk and the partition log's leader epoch:
the byte layout of docs/format.md, atomic replacement, typed errors for every
kind of damage, the rebuild from batch headers, and single-node logs that
stay exactly as before (no file, epoch 0 in every batch)."""

from __future__ import annotations

import logging
import os
import struct

import crc32c
import pytest
from log_helpers import FaultIO, batch, config, open_log

from tailrace.broker.log.epoch_checkpoint import (
    EPOCH_CHECKPOINT_NAME,
    MAX_ENTRIES,
    decode_epoch_checkpoint,
    encode_epoch_checkpoint,
    read_epoch_checkpoint,
    write_epoch_checkpoint,
)
from tailrace.broker.log.errors import CorruptCheckpointError
from tailrace.broker.replication import UNDEFINED_EPOCH, EpochEntry
from tailrace.client.errors import StorageError
from tailrace.client.records import iter_headers

ENTRIES = [EpochEntry(0, 0), EpochEntry(3, 140), EpochEntry(7, 2**40)]


def headers_epochs(log) -> list[tuple[int, int]]:
    """(base offset, leader epoch) of every batch, read from the files."""
    out = []
    for seg in log.segments:
        with open(seg.log_path, "rb") as f:
            data = f.read(seg.size)
        out += [(h.base_offset, h.leader_epoch) for _pos, h in iter_headers(data)]
    return out


# --- the format ---------------------------------------------------------------


def test_golden_bytes():
    data = encode_epoch_checkpoint([EpochEntry(0, 0), EpochEntry(3, 140)])
    body = (
        b"TREP"
        + b"\x00\x01"  # version 1
        + b"\x00\x00\x00\x02"  # two entries
        + b"\x00\x00\x00\x00"
        + b"\x00" * 8  # epoch 0 from offset 0
        + b"\x00\x00\x00\x03"
        + b"\x00" * 7
        + b"\x8c"  # epoch 3 from offset 140
    )
    assert data == body + struct.pack(">I", crc32c.crc32c(body))
    assert len(data) == 14 + 12 * 2


def test_round_trip_and_empty():
    assert decode_epoch_checkpoint(encode_epoch_checkpoint(ENTRIES)) == ENTRIES
    assert decode_epoch_checkpoint(encode_epoch_checkpoint([])) == []


def test_write_read_real_files(tmp_path):
    io = FaultIO()
    assert read_epoch_checkpoint(str(tmp_path)) is None
    write_epoch_checkpoint(io, str(tmp_path), ENTRIES)
    assert read_epoch_checkpoint(str(tmp_path)) == ENTRIES
    # temp file + fsync + rename + directory fsync
    assert io.calls["fsync"] >= 1
    assert io.calls["rename"] == 1
    assert io.calls["fsync_dir"] == 1
    assert os.listdir(tmp_path) == [EPOCH_CHECKPOINT_NAME]
    write_epoch_checkpoint(io, str(tmp_path), ENTRIES[:1])
    assert read_epoch_checkpoint(str(tmp_path)) == ENTRIES[:1]


def _damaged(tmp_path, data: bytes) -> CorruptCheckpointError:
    (tmp_path / EPOCH_CHECKPOINT_NAME).write_bytes(data)
    with pytest.raises(CorruptCheckpointError) as info:
        read_epoch_checkpoint(str(tmp_path))
    assert info.value.path == str(tmp_path / EPOCH_CHECKPOINT_NAME)
    assert isinstance(info.value, StorageError)
    return info.value


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", crc32c.crc32c(body))


@pytest.mark.parametrize("keep", [0, 3, 13, 14 + 12 * 2, 14 + 12 * 3 - 1])
def test_torn_checkpoint_is_a_typed_error(tmp_path, keep):
    err = _damaged(tmp_path, encode_epoch_checkpoint(ENTRIES)[:keep])
    assert "bytes" in err.reason


def test_flipped_bit_fails_the_crc(tmp_path):
    data = bytearray(encode_epoch_checkpoint(ENTRIES))
    data[20] ^= 0x04
    assert "CRC-32C" in _damaged(tmp_path, bytes(data)).reason


def test_trailing_bytes_are_refused(tmp_path):
    assert "need" in _damaged(tmp_path, encode_epoch_checkpoint(ENTRIES) + b"\0").reason


def test_wrong_magic_and_version(tmp_path):
    data = encode_epoch_checkpoint(ENTRIES)
    assert "magic" in _damaged(tmp_path, b"XXXX" + data[4:]).reason
    newer = _with_crc(data[:4] + b"\x00\x02" + data[6:-4])
    assert "version 2" in _damaged(tmp_path, newer).reason


def test_count_is_bounded_before_anything_is_read(tmp_path):
    huge = _with_crc(b"TREP\x00\x01" + struct.pack(">I", MAX_ENTRIES + 1))
    assert "at most" in _damaged(tmp_path, huge).reason
    # a file larger than any checkpoint is refused from its size alone
    with open(tmp_path / EPOCH_CHECKPOINT_NAME, "wb") as f:
        f.truncate(14 + 12 * MAX_ENTRIES + 5)
    with pytest.raises(CorruptCheckpointError, match="larger than any checkpoint"):
        read_epoch_checkpoint(str(tmp_path))


def test_entries_out_of_order_are_refused(tmp_path):
    body = b"TREP\x00\x01\x00\x00\x00\x02" + struct.pack(">iqiq", 3, 10, 2, 20)
    assert "does not follow" in _damaged(tmp_path, _with_crc(body)).reason
    with pytest.raises(ValueError, match="does not follow"):
        encode_epoch_checkpoint([EpochEntry(3, 10), EpochEntry(2, 20)])


# --- the partition log ---------------------------------------------------------


async def test_single_node_log_writes_no_checkpoint_and_stamps_epoch_zero(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    log = open_log(tmp_path / "p", config())
    for _ in range(5):
        log.append(batch(2))
    assert log.leader_epoch == 0
    assert not log.epoch_cache
    assert EPOCH_CHECKPOINT_NAME not in os.listdir(tmp_path / "p")
    assert {e for _o, e in headers_epochs(log)} == {0}
    # OffsetForLeaderEpoch answers as a Kafka single broker: epoch 0 is the log
    assert log.end_offset_for_epoch(0) == (0, 10)
    assert log.end_offset_for_epoch(1).epoch == UNDEFINED_EPOCH
    await log.aclose()
    assert not caplog.records


async def test_empty_log_answers_undefined(tmp_path):
    log = open_log(tmp_path / "p", config())
    assert log.end_offset_for_epoch(0).undefined
    await log.aclose()


async def test_leader_epoch_is_checkpointed_before_it_is_stamped(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    io = FaultIO()
    log = open_log(tmp_path / "p", config(), io=io)
    log.append(batch(3))  # offsets 0-2, epoch 0
    renames = io.calls["rename"]
    assert await log.become_leader(2) == 3
    assert io.calls["rename"] == renames + 1
    # the single-node records before it are epoch 0 from the log start
    assert read_epoch_checkpoint(str(tmp_path / "p")) == [(0, 0), (2, 3)]
    log.append(batch(2))  # 3-4 in epoch 2
    assert await log.become_leader(5) == 5
    log.append(batch(1))  # 5 in epoch 5
    assert headers_epochs(log) == [(0, 0), (3, 2), (5, 5)]
    assert log.epoch_cache.entries() == [(0, 0), (2, 3), (5, 5)]
    assert log.end_offset_for_epoch(0) == (0, 3)
    assert log.end_offset_for_epoch(2) == (2, 5)
    assert log.end_offset_for_epoch(5) == (5, 6)
    # the same epoch again changes nothing (no write); a lower one is refused
    renames = io.calls["rename"]
    assert await log.become_leader(5) == 6
    assert io.calls["rename"] == renames
    with pytest.raises(ValueError, match="below"):
        await log.become_leader(4)
    await log.aclose()
    log = open_log(tmp_path / "p", config(), clean=True)
    assert log.epoch_cache.entries() == [(0, 0), (2, 3), (5, 5)]
    assert log.leader_epoch == 5
    log.append(batch(1))
    assert headers_epochs(log)[-1] == (6, 5)
    await log.aclose()
    assert not caplog.records


async def test_checkpoint_is_fitted_to_the_recovered_log(tmp_path):
    """A checkpoint naming epochs past the log end (a power cut took the
    records, the checkpoint was synced) or before the log start is cut to
    the log and rewritten."""
    log = open_log(tmp_path / "p", config())
    log.append(batch(4))
    await log.aclose()
    write_epoch_checkpoint(FaultIO(), str(tmp_path / "p"), [EpochEntry(1, 0), EpochEntry(4, 4)])
    log = open_log(tmp_path / "p", config(), clean=True)
    assert log.epoch_cache.entries() == [(1, 0)]
    assert read_epoch_checkpoint(str(tmp_path / "p")) == [(1, 0)]
    await log.aclose()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-3],  # torn
        lambda data: data[:8] + bytes([data[8] ^ 1]) + data[9:],  # bit flip
        lambda data: b"",  # empty file
    ],
    ids=["torn", "bitflip", "empty"],
)
async def test_corrupt_checkpoint_is_rebuilt_from_the_batch_headers(tmp_path, caplog, damage):
    caplog.set_level(logging.WARNING)
    cfg = config(segment_bytes=600)
    log = open_log(tmp_path / "p", cfg)
    log.append(batch(2))
    await log.become_leader(1)
    for _ in range(6):
        log.append(batch(2, size=60))  # several segments
    await log.become_leader(3)
    await log.become_leader(4)  # led without writing: not in the headers
    log.append(batch(1))
    assert len(log.segments) > 2
    await log.aclose()
    path = tmp_path / "p" / EPOCH_CHECKPOINT_NAME
    path.write_bytes(damage(path.read_bytes()))
    log = open_log(tmp_path / "p", cfg, clean=True)
    assert log.epoch_cache.entries() == [(0, 0), (1, 2), (4, 14)]
    assert read_epoch_checkpoint(str(tmp_path / "p")) == [(0, 0), (1, 2), (4, 14)]
    assert log.leader_epoch == 4
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "corrupt checkpoint" in warnings[0]
    assert "rebuilding the leader-epoch cache" in warnings[0]
    await log.aclose()


async def test_leftover_temp_checkpoint_is_removed_on_open(tmp_path):
    log = open_log(tmp_path / "p", config())
    log.append(batch(1))
    await log.become_leader(1)
    log.append(batch(1))
    await log.aclose()
    (tmp_path / "p" / (EPOCH_CHECKPOINT_NAME + ".tmp")).write_bytes(b"half")
    log = open_log(tmp_path / "p", config(), clean=True)
    assert log.epoch_cache.entries() == [(0, 0), (1, 1)]
    assert EPOCH_CHECKPOINT_NAME + ".tmp" not in os.listdir(tmp_path / "p")
    await log.aclose()


async def test_retention_moves_the_first_epoch_up(tmp_path):
    cfg = config(segment_bytes=400, retention_ms=10_000)
    log = open_log(tmp_path / "p", cfg)
    await log.become_leader(1)
    for k in range(6):
        log.append(batch(1, ts=1_000 + k, size=120))
    await log.become_leader(2)
    for k in range(6):
        log.append(batch(1, ts=50_000 + k, size=120))
    assert await log.enforce_retention(now_ms=30_000) > 0
    start = log.log_start_offset
    assert 0 < start <= 6
    expected = [(1, start), (2, 6)] if start < 6 else [(2, 6)]
    assert log.epoch_cache.entries() == expected
    assert read_epoch_checkpoint(str(tmp_path / "p")) == expected
    await log.aclose()


async def test_recovery_after_a_lost_tail_drops_the_lost_epoch(tmp_path):
    """The epoch was checkpointed, its records never reached the disk (a
    power cut): recovery cuts the log, and the cache with it."""
    log = open_log(tmp_path / "p", config())
    log.append(batch(2))
    kept = log.segments[-1].size
    await log.become_leader(2)
    log.append(batch(2))
    seg_path = log.segments[-1].log_path
    await log.aclose()
    os.truncate(seg_path, kept)
    log = open_log(tmp_path / "p", config(), clean=False)
    assert log.log_end_offset == 2
    assert log.epoch_cache.entries() == [(0, 0)]
    assert read_epoch_checkpoint(str(tmp_path / "p")) == [(0, 0)]
    await log.aclose()


async def test_failed_checkpoint_sync_takes_the_partition_offline(tmp_path):
    io = FaultIO()
    log = open_log(tmp_path / "p", config(), io=io)
    log.append(batch(1))
    io.fail["fsync"] = 5  # EIO
    with pytest.raises(StorageError, match="offline"):
        await log.become_leader(1)
    assert log.offline
    assert log.leader_epoch == 0  # never stamped
    with pytest.raises(StorageError):
        log.append(batch(1))
    log.abandon()
