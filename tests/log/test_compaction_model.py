"""A model test of compaction (hypothesis): random puts, tombstones, rolls,
compactions, restarts (clean and kill -9) and clock steps against a plain
list of every record appended.

After each compaction (every pass, until the cleaner has nothing left),
reading the partition from its start must give, in offset order:

* below the cleaned offset (``clean_to``): exactly the latest record of
  every key among the records below it, tombstones included until
  ``delete_retention_ms`` after their timestamp and never after a cleaning
  that found them that old;
* from ``clean_to`` on: every record appended;

and every record read has the offset, key and value it was appended with
(offsets never change)."""

from __future__ import annotations

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from log_helpers import config, open_log

from tailrace.broker.log.cleaner import CleanerSettings
from tailrace.client.records import build_batch, iter_headers, iter_records, validate_batch

DELETE_RETENTION = 1_000
KEYS = [b"a", b"b", b"c", b"d", b"e", b"f"]

put = st.tuples(
    st.just("put"),
    st.lists(
        st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(min_size=1, max_size=40))),
        min_size=1,
        max_size=4,
    ),
)
ops = st.lists(
    st.one_of(
        put,
        put,
        put,
        st.tuples(st.just("roll"), st.just(None)),
        st.tuples(st.just("clean"), st.sampled_from([1 << 20, 300])),
        st.tuples(st.just("restart"), st.booleans()),
        st.tuples(st.just("clock"), st.integers(-300, 1_500)),
    ),
    min_size=1,
    max_size=40,
)


def _cfg():  # type: ignore[no-untyped-def]
    return config(
        cleanup_policy="compact",
        segment_bytes=400,
        segment_ms=100,
        index_interval_bytes=64,
        delete_retention_ms=DELETE_RETENTION,
    )


def _read(log) -> list[tuple[int, bytes | None, bytes | None]]:  # type: ignore[no-untyped-def]
    out = []
    offset = log.log_start_offset
    while True:
        s = log.read(offset, 500)
        if s is None:
            return out
        with s:
            data = s.read_bytes()
        prev = s.first_offset - 1
        for pos, h in iter_headers(data):
            validate_batch(data, pos, max_batch_bytes=1 << 30, allow_gaps=True)
            assert h.base_offset == prev + 1  # compaction keeps batches contiguous
            prev = h.last_offset
            for off, _ts, key, value, _h in iter_records(data, h, pos):
                if off >= offset:
                    out.append((off, key, value))
        offset = s.last_offset + 1


class Model:
    def __init__(self) -> None:
        #: offset -> (key, value, timestamp) of every record appended
        self.records: dict[int, tuple[bytes, bytes | None, int]] = {}
        #: tombstones a cleaning found older than delete_retention_ms
        self.expired: set[int] = set()

    def expected(self, clean_to: int, now: int, cleaned: bool) -> list:
        latest: dict[bytes, int] = {}
        for off in sorted(self.records):
            if off < clean_to:
                latest[self.records[off][0]] = off
        out = []
        for off in sorted(self.records):
            key, value, ts = self.records[off]
            if off < clean_to:
                if latest[key] != off:
                    continue
                if value is None:
                    if cleaned and ts <= now - DELETE_RETENTION:
                        self.expired.add(off)
                    if off in self.expired:
                        continue
            out.append((off, key, value))
        return out


async def _scenario(path, steps) -> None:  # type: ignore[no-untyped-def]
    clock = [1_000_000]
    log = open_log(path, _cfg(), clock_ms=lambda: clock[0])
    model = Model()
    try:
        for op, arg in steps:
            if op == "put":
                batch = build_batch([(clock[0], k, v, None) for k, v in arg])
                result = log.append(batch)
                for i, (k, v) in enumerate(arg):
                    model.records[result.base_offset + i] = (k, v, clock[0])
            elif op == "roll":
                clock[0] += 150  # past segment_ms: the next put rolls
            elif op == "clock":
                clock[0] += arg
            elif op == "clean":
                await log.flush()
                passes = 0
                while await log.clean(CleanerSettings(key_map_bytes=arg), force=True):
                    passes += 1
                    assert passes < 100
                got = _read(log)
                assert got == model.expected(log.clean_to, clock[0], cleaned=passes > 0)
            elif op == "restart":
                if arg:
                    await log.aclose()
                    log = open_log(path, _cfg(), clean=True, clock_ms=lambda: clock[0])
                else:
                    rp = log.recovery_point
                    log.abandon()  # kill -9: the page cache keeps what was written
                    log = open_log(path, _cfg(), recovery_point=rp, clock_ms=lambda: clock[0])
                assert _read(log) == model.expected(log.clean_to, clock[0], cleaned=False)
        assert _read(log) == model.expected(log.clean_to, clock[0], cleaned=False)
    finally:
        await log.aclose()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=ops)
def test_compaction_keeps_the_latest_value_of_every_live_key(tmp_path_factory, steps):
    path = tmp_path_factory.mktemp("model") / "p"
    trio.run(_scenario, path, steps)
