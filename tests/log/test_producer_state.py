"""Idempotent producers: dedup, sequence gaps, epochs, and the state's
rebuild from snapshots and from the log after a clean or unclean stop."""

from __future__ import annotations

import os
import time

import pytest
from log_helpers import batch, config, open_log, read_records

from tailrace.broker.log.producer_state import ProducerStateManager, next_sequence
from tailrace.client.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    OutOfOrderSequenceError,
    UnknownProducerIdError,
)

PID = 4242
#: Producer state expires a day after a producer's last batch timestamp.
NOW = time.time_ns() // 1_000_000


def pb(seq: int, n: int = 1, *, epoch: int = 0, pid: int = PID, ts: int = NOW) -> bytes:
    return batch(
        [f"{pid}:{epoch}:{seq + i}".encode() for i in range(n)], ts=ts, producer=(pid, epoch, seq)
    )


def test_duplicate_returns_the_original_offsets_and_appends_nothing(tmp_path):
    log = open_log(tmp_path / "p")
    log.append(batch(2))  # someone else's records first
    first = log.append(pb(0, 3))
    second = log.append(pb(3, 2))
    assert (first.base_offset, first.last_offset) == (2, 4)
    for original, retry in ((first, pb(0, 3)), (second, pb(3, 2))):
        dup = log.append(retry)
        assert dup.duplicate
        assert (dup.base_offset, dup.last_offset) == (original.base_offset, original.last_offset)
    assert log.log_end_offset == 7
    assert len(read_records(log)) == 7
    log.close()


def test_gap_epoch_and_unknown_producer_errors_change_nothing(tmp_path):
    log = open_log(tmp_path / "p")
    with pytest.raises(UnknownProducerIdError):
        log.append(pb(5))  # unknown producer must start at 0
    log.append(pb(0, 2, epoch=3))
    with pytest.raises(OutOfOrderSequenceError, match="expected 2"):
        log.append(pb(3, epoch=3))  # gap
    with pytest.raises(OutOfOrderSequenceError):
        log.append(pb(1, epoch=3))  # overlap that is no retained batch
    with pytest.raises(InvalidProducerEpochError):
        log.append(pb(2, epoch=2))  # fenced: older epoch
    with pytest.raises(OutOfOrderSequenceError, match="new epoch"):
        log.append(pb(2, epoch=4))  # a new epoch must start at 0
    with pytest.raises(InvalidRecordError):
        log.append(batch(1, producer=(PID, 3, -1)))
    assert log.log_end_offset == 2
    assert log.append(pb(2, epoch=3)).base_offset == 2
    assert log.append(pb(0, epoch=4)).base_offset == 3  # the bump resets sequences
    with pytest.raises(InvalidProducerEpochError):
        log.append(pb(3, epoch=3))
    log.close()


def test_only_the_last_five_batches_are_retained(tmp_path):
    log = open_log(tmp_path / "p")
    for seq in range(7):
        log.append(pb(seq))
    for seq in (2, 3, 4, 5, 6):
        assert log.append(pb(seq)).duplicate
    with pytest.raises(OutOfOrderSequenceError):
        log.append(pb(1))  # too old to be recognised
    log.close()


def test_sequence_wraps_at_int32_max(tmp_path):
    top = 2**31 - 1
    assert next_sequence(top, 1) == 0
    assert next_sequence(top - 1, 3) == 1
    log = open_log(tmp_path / "p")
    state = log.producer_state
    # a producer that is about to wrap (as if rebuilt from an old snapshot)
    log.append(pb(0))
    state.producers[PID].batches[-1] = state.producers[PID].batches[-1]._replace(last_seq=top - 2)
    log.append(pb(top - 1, 3))  # top-1, top, 0
    assert log.append(pb(1)).base_offset == 4
    assert log.append(pb(top - 1, 3)).duplicate
    log.close()


def test_multi_batch_appends(tmp_path):
    log = open_log(tmp_path / "p")
    r = log.append(pb(0, 2) + pb(2, 1) + pb(0, 1, pid=7))
    assert (r.base_offset, r.last_offset) == (0, 3)
    dup = log.append(pb(0, 2) + pb(2, 1))
    assert dup.duplicate
    assert (dup.base_offset, dup.last_offset) == (0, 2)
    with pytest.raises(OutOfOrderSequenceError, match="mixes"):
        log.append(pb(2, 1) + pb(3, 1))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(pb(3, 1) + pb(5, 1))  # the second batch leaves a gap
    assert log.log_end_offset == 4
    log.close()


def _producers(log) -> dict[int, tuple[int, list]]:
    return {pid: (e.epoch, list(e.batches)) for pid, e in log.producer_state.producers.items()}


def test_state_survives_a_clean_restart_through_the_snapshot(tmp_path):
    log = open_log(tmp_path / "p")
    for seq in range(0, 12, 2):
        log.append(pb(seq, 2, epoch=1))
    log.append(pb(0, pid=99))
    before = _producers(log)
    assert log.close()
    assert f"{log.log_end_offset:020d}.snapshot" in os.listdir(tmp_path / "p")
    log = open_log(tmp_path / "p", clean=True)
    assert _producers(log) == before
    assert log.append(pb(10, 2, epoch=1)).duplicate
    assert log.append(pb(12, epoch=1)).base_offset == 13
    log.close()


@pytest.mark.parametrize("snapshot", ["kept", "deleted", "corrupt"])
def test_state_is_rebuilt_from_the_log_after_a_crash(tmp_path, snapshot):
    log = open_log(tmp_path / "p", config(segment_bytes=500))
    for seq in range(4):
        log.append(pb(seq, epoch=2))
    log.close()  # snapshot at offset 4
    log = open_log(tmp_path / "p", clean=True)
    for seq in range(4, 20):
        log.append(pb(seq, epoch=2))
    before = _producers(log)
    log.abandon()  # crash: state after offset 4 lives only in the log
    snap = tmp_path / "p" / f"{4:020d}.snapshot"
    if snapshot == "deleted":
        snap.unlink()
    elif snapshot == "corrupt":
        data = bytearray(snap.read_bytes())
        data[-1] ^= 1
        snap.write_bytes(bytes(data))
    log = open_log(tmp_path / "p", config(segment_bytes=500), recovery_point=4, clean=False)
    assert _producers(log) == before
    assert log.append(pb(19, epoch=2)).duplicate
    assert log.append(pb(20, epoch=2)).base_offset == 20
    log.close()


def test_truncated_tail_forgets_its_batches(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=1 << 20))
    for seq in range(5):
        log.append(pb(seq))
    seg = log.segments[-1]
    log.abandon()
    os.truncate(seg.log_path, seg.size - 10)  # the last batch is torn
    log = open_log(tmp_path / "p", recovery_point=0, clean=False)
    assert log.log_end_offset == 4
    # the producer's retry of the lost batch is appended, not a duplicate
    r = log.append(pb(4))
    assert (r.duplicate, r.base_offset) == (False, 4)
    log.close()


def test_snapshot_past_the_recovered_end_is_not_used(tmp_path):
    log = open_log(tmp_path / "p", config(segment_bytes=1 << 20))
    for seq in range(6):
        log.append(pb(seq))
    assert log.close()  # snapshot at 6
    seg = log.segments[-1]
    os.truncate(seg.log_path, seg.size - 5)  # lose the last batch
    log = open_log(tmp_path / "p", recovery_point=0, clean=False)
    assert log.log_end_offset == 5
    assert f"{6:020d}.snapshot" not in os.listdir(tmp_path / "p")
    assert log.append(pb(5)).base_offset == 5
    log.close()


def test_idle_producers_expire(tmp_path):
    now = [1_000_000]
    log = open_log(
        tmp_path / "p",
        config(producer_id_expiration_ms=60_000),
        clock_ms=lambda: now[0],
    )
    log.append(pb(0, pid=1, ts=1_000_000))
    log.append(pb(0, pid=2, ts=1_050_000))
    now[0] = 1_070_000
    assert log.producer_state.expire(now[0]) == 1
    assert set(log.producer_state.producers) == {2}
    with pytest.raises(UnknownProducerIdError):
        log.append(pb(1, pid=1))
    log.close()


def test_snapshot_format_round_trip_and_damage():
    state = ProducerStateManager(1000)
    for h_seq in range(7):
        raw = pb(h_seq, 2, pid=5)
        from tailrace.client.records import read_header

        state.replay(read_header(raw), 10 + h_seq * 2)
    data = state.snapshot_bytes(24)
    assert data[:4] == b"TRPS"
    again, offset = ProducerStateManager.from_snapshot(data, 1000)
    assert offset == 24
    assert again.producers[5].batches == state.producers[5].batches
    assert len(again.producers[5].batches) == 5
    for bad in (data[:-1], data[:10], b"XXXX" + data[4:], data[:-1] + bytes([data[-1] ^ 1])):
        with pytest.raises(ValueError, match=r"."):
            ProducerStateManager.from_snapshot(bad, 1000)
