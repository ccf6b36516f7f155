"""Property: whatever sequence of appends, rolls, flushes, clean reopens and
crashes happens, the log recovers to exactly the longest intact prefix of
what was appended, with dense offsets.

A crash is kill -9 (the log is abandoned; the page cache keeps every byte
written) optionally followed by the damage a power cut can do to data that
was not yet durable: a file truncated, zeros or garbage written at a random
point, inside the data or the preallocated tail. Damage never touches bytes
below the recovery point (they were fsynced). The oracle is independent of
the recovery code: the model knows each batch's bytes and where they were
written, and a batch survives iff it and every batch before it are intact.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile

import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from log_helpers import NoSyncIO, read_records

from tailrace.broker.log import LogConfig, PartitionLog
from tailrace.client.records import build_batch

values_st = st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=4)


class Written:
    """One appended batch as the model knows it."""

    __slots__ = ("base", "data", "values")

    def __init__(self, base: int, data: bytes, values: list[bytes]) -> None:
        self.base = base
        self.data = data
        self.values = values


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="tailrace-log-prop-")
        self.path = os.path.join(self.dir, "t", "0")
        self.cfg = LogConfig()
        self.log: PartitionLog | None = None
        # Crashes here are kill -9 (the page cache survives) plus explicit
        # damage, so real fsyncs would only make the test wait for the disk.
        self.io = NoSyncIO()
        self.model: list[Written] = []
        self.ts = 1_000

    @initialize(
        segment_bytes=st.integers(200, 3000),
        interval=st.sampled_from([0, 150, 4096]),
    )
    def open_new(self, segment_bytes: int, interval: int) -> None:
        self.cfg = LogConfig(
            segment_bytes=segment_bytes,
            index_interval_bytes=interval,
            preallocate_bytes=4096,
            flush="none",
        )
        self.log = PartitionLog.open(self.path, self.cfg, io=self.io)

    @property
    def next_offset(self) -> int:
        if not self.model:
            return 0
        last = self.model[-1]
        return last.base + len(last.values)

    def _batch(self, values: list[bytes]) -> bytes:
        self.ts += 1
        return build_batch([(self.ts + i, None, v, None) for i, v in enumerate(values)])

    def _record(self, base: int, raw: bytes, values: list[bytes]) -> None:
        stored = base.to_bytes(8, "big") + raw[8:12] + bytes(4) + raw[16:]
        self.model.append(Written(base, stored, values))

    @rule(values=values_st)
    def append(self, values: list[bytes]) -> None:
        raw = self._batch(values)
        r = self.log.append(raw)
        assert (r.base_offset, r.last_offset) == (
            self.next_offset,
            self.next_offset + len(values) - 1,
        )
        self._record(r.base_offset, raw, values)

    @rule(groups=st.lists(values_st, min_size=2, max_size=3))
    def append_several(self, groups: list[list[bytes]]) -> None:
        raws = [self._batch(v) for v in groups]
        r = self.log.append(b"".join(raws))
        base = r.base_offset
        assert base == self.next_offset
        for raw, values in zip(raws, groups, strict=True):
            self._record(base, raw, values)
            base += len(values)
        assert r.last_offset == base - 1

    @rule()
    def flush(self) -> None:
        trio.run(self.log.flush)
        assert self.log.recovery_point == self.next_offset

    @rule()
    def sync_sealed(self) -> None:
        trio.run(self.log.maybe_flush)

    @rule()
    def close_and_reopen(self) -> None:
        assert self.log.close()
        self.log = PartitionLog.open(self.path, self.cfg, clean=True, io=self.io)
        self._check_contents()

    @rule(
        kind=st.sampled_from(["none", "truncate", "zeros", "garbage"]),
        where=st.floats(0, 1),
        length=st.integers(1, 400),
        seed=st.integers(0, 2**32 - 1),
    )
    def crash(self, kind: str, where: float, length: int, seed: int) -> None:
        rp = self.log.recovery_point
        segments = [(s.base_offset, s.log_path) for s in self.log.segments]
        self.log.abandon()
        layout = self._layout(segments)
        if kind != "none":
            self._damage(segments, layout, rp, kind, where, length, seed)
        survivors = self._intact_prefix(layout)
        self.log = PartitionLog.open(
            self.path, self.cfg, recovery_point=rp, clean=False, io=self.io
        )
        self.model = self.model[:survivors]
        self._check_contents()

    def _layout(self, segments: list[tuple[int, str]]) -> list[tuple[str, int]]:
        """(file, position) of every model batch: batches are laid out in
        order, each segment starting at its base offset."""
        bases = [b for b, _p in segments]
        out = []
        pos = {}
        for w in self.model:
            seg = max(i for i, b in enumerate(bases) if b <= w.base)
            path = segments[seg][1]
            p = pos.get(path, 0)
            out.append((path, p))
            pos[path] = p + len(w.data)
        return out

    def _damage(self, segments, layout, rp, kind, where, length, seed) -> None:
        """Damage one spot at or after the recovery point: in the data of a
        file or just past it (its preallocated tail)."""
        data_end: dict[str, int] = {}
        for w, (path, pos) in zip(self.model, layout, strict=True):
            data_end[path] = pos + len(w.data)
        first = next((i for i, w in enumerate(self.model) if w.base >= rp), None)
        if first is None:  # everything is durable: only the tail may be hit
            start_path = segments[-1][1]
            start_pos = data_end.get(start_path, 0)
        else:
            start_path, start_pos = layout[first]
        paths = [p for _b, p in segments]
        spans = []
        for p in paths[paths.index(start_path) :]:
            lo = start_pos if p == start_path else 0
            hi = min(os.path.getsize(p), data_end.get(p, 0) + 64)
            spans.append((p, lo, max(lo, hi)))
        target = int(where * sum(hi - lo for _p, lo, hi in spans))
        for span_path, lo, hi in spans:
            path, pos = span_path, lo + target
            if pos <= hi:
                break
            target -= hi - lo + 1
        rnd = random.Random(seed)
        with open(path, "r+b") as f:
            if kind == "truncate":
                f.truncate(pos)
                return
            f.seek(pos)
            old = f.read(length)
            if kind == "zeros":
                new = bytes(length)
            else:  # differs from every old byte it covers
                new = bytes(
                    (old[i] if i < len(old) else 0) ^ rnd.randrange(1, 256) for i in range(length)
                )
            f.seek(pos)
            f.write(new)

    def _intact_prefix(self, layout) -> int:
        contents: dict[str, bytes] = {}
        for i, (w, (path, pos)) in enumerate(zip(self.model, layout, strict=True)):
            if path not in contents:
                with open(path, "rb") as f:
                    contents[path] = f.read()
            got = contents[path][pos : pos + len(w.data)]
            # leader_epoch (bytes 12-16) is outside every check: ignore it
            if len(got) != len(w.data) or got[:12] != w.data[:12] or got[16:] != w.data[16:]:
                return i
        return len(self.model)

    def _check_contents(self) -> None:
        expected = [(w.base + i, v) for w in self.model for i, v in enumerate(w.values)]
        assert self.log.log_end_offset == self.next_offset
        assert read_records(self.log) == expected

    @invariant()
    def offsets_are_dense(self) -> None:
        if self.log is not None:
            assert self.log.log_end_offset == self.next_offset
            assert self.log.high_watermark == self.next_offset

    @precondition(lambda self: self.log is not None)
    @rule(offset_frac=st.floats(0, 1))
    def read_somewhere(self, offset_frac: float) -> None:
        if not self.model:
            return
        offset = int(offset_frac * (self.next_offset - 1))
        with self.log.read(offset, 500) as s:
            assert s.first_offset <= offset <= s.last_offset

    def teardown(self) -> None:
        if self.log is not None:
            self.log.abandon()
        shutil.rmtree(self.dir, ignore_errors=True)


LogMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLogRecovery = LogMachine.TestCase
