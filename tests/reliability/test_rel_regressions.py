"""Regression tests for the bugs the reliability scenarios found, each in the
smallest setting that shows it, named for the scenario that found it."""

from __future__ import annotations

import os

from tailrace.broker.log import LogConfig, PartitionLog
from tailrace.broker.testing.powercut import PowerCutIO
from tailrace.client.records import build_batch, iter_headers, unpack_records


def _batch(i: int, size: int = 200) -> bytes:
    return build_batch([(1_000 + i, None, b"%06d" % i + b"x" * size, None)])


def _read_all(log: PartitionLog) -> list[bytes]:
    out = []
    offset = log.log_start_offset
    while (s := log.read(offset, 1 << 20)) is not None:
        with s:
            data = s.read_bytes()
        for pos, h in iter_headers(data):
            out += [r[2] for r in unpack_records(data, h, pos)]
        offset = s.last_offset + 1
    return out


async def test_power_cut_a_segment_sealed_after_its_data_was_synced_is_rescanned(tmp_path):
    """Found by the power-cut scenario (flush interval, seed 2003): data
    synced while its segment was active moved the recovery point to the end
    of that segment; the roll that sealed it right there trimmed it, but
    that trim was not durable yet. A power cut then left the segment
    untrimmed (preallocated zeros after its data) while the new segment's
    name had been made durable by another file's directory fsync, so
    recovery started at the new segment, trusted the old one, and served
    its zero tail as corrupt data. A sealed-but-unsynced segment now caps
    the recovery point at its base."""
    path = str(tmp_path / "t" / "0")
    os.makedirs(path)
    cfg = LogConfig(flush="interval", segment_bytes=1500, preallocate_bytes=4096)
    sim = PowerCutIO(str(tmp_path))
    log = PartitionLog.open(path, cfg, io=sim)
    sim.arm()
    i = 0
    while log.segments[-1].size + 300 <= cfg.segment_bytes:
        log.append(_batch(i))
        i += 1
    await log.flush()  # everything durable while segment 0 is still active
    assert log.recovery_point == i
    log.append(_batch(i))  # rolls: segment 0 sealed at offset i, not synced yet
    assert [s.base_offset for s in log.segments] == [0, i]
    assert log.recovery_point == 0  # segment 0's seal is not durable
    sim.fsync_dir(path)  # e.g. a producer snapshot written there: names durable
    point = log.recovery_point
    sim.cut()
    log.abandon()
    sim.materialize(1, names="everything", contents="durable")
    assert os.path.getsize(os.path.join(path, "00000000000000000000.log")) == 4096  # untrimmed
    log = PartitionLog.open(path, cfg, recovery_point=point)
    try:
        assert _read_all(log)[:i] == [b"%06d" % k + b"x" * 200 for k in range(i)]
    finally:
        log.close()


async def test_crash_point_a_checkpoint_written_before_the_roll_does_not_skip_the_sealed_segment(
    tmp_path,
):
    """Found by the crash-point scenario (power cut at segment.created):
    the checkpoint on disk was written while the data was synced up to the
    very end of the active segment, so its recovery point was that end. The
    roll that followed sealed the segment there and the power failed before
    the seal was synced: recovery started at the new segment and trusted
    the untrimmed old one. Recovery now starts at the segment holding
    recovery_point - 1."""
    path = str(tmp_path / "t" / "0")
    os.makedirs(path)
    cfg = LogConfig(flush="sync", segment_bytes=1500, preallocate_bytes=4096)
    sim = PowerCutIO(str(tmp_path))
    log = PartitionLog.open(path, cfg, io=sim)
    sim.arm()
    i = 0
    while log.segments[-1].size + 300 <= cfg.segment_bytes:
        await log.wait_durable(log.append(_batch(i)))
        i += 1
    checkpointed = log.recovery_point  # what a checkpoint now writes: i
    assert checkpointed == i
    log.append(_batch(i))  # rolls right at the recovery point
    sim.fsync_dir(path)
    sim.cut()
    log.abandon()
    sim.materialize(2, names="everything", contents="durable")
    log = PartitionLog.open(path, cfg, recovery_point=checkpointed)
    try:
        assert _read_all(log) == [b"%06d" % k + b"x" * 200 for k in range(i)]
    finally:
        log.close()
