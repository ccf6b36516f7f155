"""The replica checker (broker/faultkit/replicas.py) must see each way
replicas can disagree: it compares logs written by the real storage engine,
then made to diverge on purpose (a checker that cannot fail proves nothing)."""

from __future__ import annotations

import os
import shutil
import struct

from tailrace.broker.faultkit.replicas import Monotonic, compare_replicas, read_replica
from tailrace.broker.log import LogConfig, PartitionLog
from tailrace.client.records import build_batch


def _write(path: str, values: list[bytes]) -> None:
    log = PartitionLog.open(
        path, LogConfig(flush="none", segment_bytes=600, index_interval_bytes=100)
    )
    for v in values:
        log.append(build_batch([(1_000, None, v, None)]))
    assert log.close()


def _replicas(tmp_path, n: int = 3, values: int = 30) -> dict[str, str]:
    first = str(tmp_path / "b1" / "t" / "0")
    _write(first, [b"v%03d" % i for i in range(values)])
    out = {"b1": first}
    for i in range(2, n + 1):
        path = str(tmp_path / f"b{i}" / "t" / "0")
        shutil.copytree(first, path)
        out[f"b{i}"] = path
    return out


def _segment_files(path: str) -> list[str]:
    return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".log"))


def _set_epoch(path: str, from_offset: int, epoch: int) -> None:
    """Stamp ``epoch`` on every batch at or after ``from_offset`` (the
    leader_epoch field is outside the CRC, as the broker's stamp is)."""
    for seg in _segment_files(path):
        with open(seg, "r+b") as f:
            data = bytearray(f.read())
            pos = 0
            while pos + 12 <= len(data):
                base, length = struct.unpack_from(">qi", data, pos)
                if length <= 0:
                    break
                if base >= from_offset:
                    struct.pack_into(">i", data, pos + 12, epoch)
                pos += 12 + length
            f.seek(0)
            f.write(data)


def test_identical_replicas_agree(tmp_path):
    logs, problems = compare_replicas(_replicas(tmp_path))
    assert problems == []
    assert [log.log_end for log in logs] == [30, 30, 30]
    assert len(_segment_files(str(tmp_path / "b1" / "t" / "0"))) > 2


def test_a_lagging_replica_agrees_below_the_high_watermark_only(tmp_path):
    reps = _replicas(tmp_path)
    short = str(tmp_path / "short" / "t" / "0")
    _write(short, [b"v%03d" % i for i in range(20)])
    reps["b3"] = short
    assert compare_replicas(reps, up_to=20)[1] == []
    problems = compare_replicas(reps)[1]
    assert problems == ["b3 ends at offset 20 with 20 batches; b1 has 30"]


def test_a_diverged_batch_is_named(tmp_path):
    reps = _replicas(tmp_path)
    other = str(tmp_path / "other" / "t" / "0")
    _write(other, [b"v%03d" % i if i != 17 else b"XXXX" for i in range(30)])
    reps["b2"] = other
    problems = compare_replicas(reps)[1]
    assert len(problems) == 1
    assert problems[0].startswith("b2 differs from b1 at batch 17: offsets 17-17 epoch 0")
    # the same divergence above the high watermark is allowed (it is truncated later)
    assert compare_replicas(reps, up_to=17)[1] == []


def test_same_offsets_different_leader_epoch_is_a_divergence(tmp_path):
    reps = _replicas(tmp_path)
    _set_epoch(reps["b1"], 10, 1)
    _set_epoch(reps["b2"], 10, 1)
    _set_epoch(reps["b3"], 12, 1)  # b3 kept 10 and 11 from the old leader's epoch
    problems = compare_replicas(reps)[1]
    assert len(problems) == 1
    assert problems[0].startswith("b3 differs from b1 at batch 10: offsets 10-10 epoch 0")


def test_leader_epochs_going_back_along_a_log(tmp_path):
    reps = _replicas(tmp_path, n=1)
    _set_epoch(reps["b1"], 0, 5)
    _set_epoch(reps["b1"], 20, 4)
    log = read_replica("b1", reps["b1"])
    assert log.problems == ["b1: leader epoch goes back from 5 to 4 at offset 20"]


def test_a_corrupted_tail_is_a_problem_and_zero_bytes_are_not(tmp_path):
    reps = _replicas(tmp_path, n=2)
    last = _segment_files(reps["b2"])[-1]
    with open(last, "ab") as f:
        f.write(b"\x00" * 64)
    assert compare_replicas(reps)[1] == []
    with open(last, "r+b") as f:
        f.seek(-200, os.SEEK_END)
        f.write(b"\xff" * 8)
    problems = compare_replicas(reps)[1]
    assert any("undecodable batch" in p for p in problems)


def test_monotonic_reports_values_that_go_back():
    seen = Monotonic()
    for v in (0, 3, 3, 7):
        seen.observe("hw", "t/0@1", v)
    seen.observe("hw", "t/0@2", 2)  # another replica's own high watermark
    seen.observe("leader_epoch", "t/0", 2)
    assert seen.problems == []
    seen.observe("hw", "t/0@1", 6, source="metadata")
    seen.observe("leader_epoch", "t/0", 1)
    assert seen.problems == [
        "hw of t/0@1 went back from 7 to 6 (seen by metadata)",
        "leader_epoch of t/0 went back from 2 to 1",
    ]
