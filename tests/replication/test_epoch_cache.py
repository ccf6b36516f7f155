"""The leader-epoch cache answers and mutates as Kafka's LeaderEpochFileCache
does (storage/.../epoch/LeaderEpochFileCache.java), case by case."""

from __future__ import annotations

import ast
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailrace.broker.replication import (
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    EpochEndOffset,
    LeaderEpochCache,
)

UNDEF = EpochEndOffset(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)


def cache(*entries: tuple[int, int]) -> LeaderEpochCache:
    return LeaderEpochCache(entries)


def test_the_package_does_no_io():
    """Sans-I/O: no module of broker/replication imports trio, sockets, the
    cluster store's client or the log."""
    root = pathlib.Path(__file__).parents[2] / "broker" / "replication"
    banned = {"trio", "socket", "httpx", "anyio", "os", "tailrace.broker.log"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert not any(name == b or name.startswith(b + ".") for b in banned), (
                    f"{path.name} imports {name}"
                )


# --- end_offset_for: every branch of Kafka's endOffsetFor ------------------------


def test_undefined_epoch_asked_is_undefined():
    assert cache((0, 0), (2, 10)).end_offset_for(UNDEFINED_EPOCH, 20) == UNDEF


def test_empty_cache_answers_undefined():
    assert cache().end_offset_for(0, 5) == UNDEF
    assert cache().end_offset_for(3, 5) == UNDEF


def test_latest_epoch_ends_at_the_log_end():
    assert cache((0, 0), (2, 10)).end_offset_for(2, 20) == (2, 20)


def test_epoch_above_every_known_one_is_undefined():
    assert cache((0, 0), (2, 10)).end_offset_for(3, 20) == UNDEF


def test_epoch_below_every_known_one_answers_itself_and_the_first_start():
    # the data before the first epoch was removed (retention)
    assert cache((3, 100), (5, 150)).end_offset_for(1, 200) == (1, 100)


def test_known_middle_epoch_ends_where_the_next_starts():
    c = cache((0, 0), (2, 10), (5, 30))
    assert c.end_offset_for(0, 40) == (0, 10)
    assert c.end_offset_for(2, 40) == (2, 30)


def test_unknown_middle_epoch_answers_the_floor_epoch():
    c = cache((0, 0), (2, 10), (5, 30))
    assert c.end_offset_for(1, 40) == (0, 10)
    assert c.end_offset_for(4, 40) == (2, 30)


# --- assign --------------------------------------------------------------------


def test_assign_appends_and_ignores_repeats():
    c = cache()
    assert c.assign(0, 0)
    assert not c.assign(0, 0)
    assert not c.assign(0, 5)  # same epoch, later offset: nothing new
    assert c.assign(1, 5)
    assert c.entries() == [(0, 0), (1, 5)]


def test_assign_ignores_negative_epochs():
    c = cache((0, 0))
    assert not c.assign(-1, 10)
    assert c.entries() == [(0, 0)]


def test_assign_removes_conflicting_entries():
    # same epoch at a lower offset replaces it
    c = cache((0, 0), (1, 10))
    assert c.assign(1, 7)
    assert c.entries() == [(0, 0), (1, 7)]
    # a lower epoch removes the newer ones
    c = cache((0, 0), (1, 10), (3, 20))
    assert c.assign(2, 25)
    assert c.entries() == [(0, 0), (1, 10), (2, 25)]
    # a new epoch at the start offset of the latest one replaces it (no data
    # was written in that one)
    c = cache((0, 0), (1, 10))
    assert c.assign(2, 10)
    assert c.entries() == [(0, 0), (2, 10)]


def test_constructor_refuses_non_monotonic_entries():
    with pytest.raises(ValueError, match="does not follow"):
        cache((1, 0), (1, 5))
    with pytest.raises(ValueError, match="does not follow"):
        cache((1, 5), (2, 5))
    with pytest.raises(ValueError, match="negative"):
        cache((-1, 0))


# --- truncation ----------------------------------------------------------------


def test_truncate_from_end_drops_epochs_starting_at_or_after():
    c = cache((0, 0), (1, 10), (2, 20))
    assert not c.truncate_from_end(21)
    assert c.truncate_from_end(20)
    assert c.entries() == [(0, 0), (1, 10)]
    assert c.truncate_from_end(5)
    assert c.entries() == [(0, 0)]
    assert not c.truncate_from_end(-1)


def test_truncate_from_start_collapses_into_the_last_removed():
    c = cache((0, 0), (1, 10), (2, 20))
    assert c.truncate_from_start(15)
    assert c.entries() == [(1, 15), (2, 20)]
    assert c.truncate_from_start(20)
    assert c.entries() == [(2, 20)]
    assert not c.truncate_from_start(20)
    assert not c.truncate_from_start(3)
    assert c.truncate_from_start(30)
    assert c.entries() == [(2, 30)]


def test_lookups():
    c = cache((0, 0), (2, 10), (5, 30))
    assert c.latest_epoch == 5
    assert c.start_offset_of(2) == 10
    assert c.start_offset_of(3) is None
    assert c.epoch_for_offset(9) == 0
    assert c.epoch_for_offset(10) == 2
    assert c.epoch_for_offset(1000) == 5
    assert cache((1, 5)).epoch_for_offset(4) == UNDEFINED_EPOCH
    assert c.previous_epoch(5) == 2
    assert c.previous_epoch(0) == UNDEFINED_EPOCH
    assert cache().latest_epoch == UNDEFINED_EPOCH


# --- against a model: the cache of a log is a function of its batches ----------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(0, 6), st.integers(1, 4)),
            st.tuples(st.just("cut"), st.integers(0, 40)),
            st.tuples(st.just("start"), st.integers(0, 40)),
        ),
        max_size=40,
    )
)
def test_cache_matches_the_epochs_of_the_records(ops):
    """A log of records each stamped with an epoch (epochs never decrease in
    it, as a leader's appends); the cache, kept with assign on append and the
    truncations, answers end_offset_for as a scan of the records would."""
    records: list[int] = []  # epoch of each offset
    start = 0
    c = LeaderEpochCache()
    for op in ops:
        if op[0] == "append":
            epoch = max(op[1], records[-1] if len(records) > start else 0)
            c.assign(epoch, len(records))
            records.extend([epoch] * op[2])
        elif op[0] == "cut":
            end = max(start, min(op[1], len(records)))
            del records[end:]
            c.truncate_from_end(end)
        else:
            new_start = min(op[1], len(records) - 1)  # keep one record
            if new_start > start:
                start = new_start
                c.truncate_from_start(start)
        leo = len(records)
        live = records[start:]
        for asked in range(-1, 8):
            got = c.end_offset_for(asked, leo)
            known = sorted(set(live))
            if asked == UNDEFINED_EPOCH or not known or asked > known[-1]:
                assert got == UNDEF
            elif asked == known[-1]:
                assert got == (asked, leo)
            else:
                nxt = min(e for e in known if e > asked)
                first = start + live.index(nxt)
                below = [e for e in known if e <= asked]
                assert got == ((below[-1] if below else asked), first)
