"""The group step's bookkeeping (scenarios/common.py ``Member``) on its own:
what a member counts as read of a partition across rebalances.

The group-of-three test once failed about 2 runs in 12 on a loaded machine
with kafka-python 3.0.12: a member held a partition and "read nothing" for
60 s. The broker's request trace and the client's debug log (docs/kafka.md,
"Client quirks met on the way") showed why: the members had read their
partitions to the end, then an extra rebalance (kafka-python 3.0.12 throws a
completed JoinGroup/SyncGroup away when it completes between two ``poll()``
calls, and its leader's new JoinGroup rebalances the group) gave each member
the same partition again. kafka-python 3 keeps the fetch position of such a
partition, so it had nothing more to deliver; the step had emptied the
member's records at the new assignment, as for clients that read the
partition again from its committed offset, and waited for ever. These tests
replay that sequence without a client.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


@pytest.fixture(scope="module")
def common() -> ModuleType:
    # the scenarios run in the clients' virtualenvs; common.py is standard
    # library only, so it loads here too
    spec = importlib.util.spec_from_file_location("matrix_common", SCENARIOS / "common.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rec(partition: int, offset: int) -> dict[str, Any]:
    return {"partition": partition, "offset": offset}


def member(common: ModuleType, keeps_positions: bool) -> Any:
    m = common.Member()
    m.keeps_positions = keeps_positions
    return m


def offsets(m: Any) -> dict[int, list[int]]:
    return {p: [r["offset"] for r in rs] for p, rs in m.records.items()}


def test_kafka_python_3_reassigned_partition_keeps_what_was_read(common: ModuleType) -> None:
    # the traced failing run: member 1 reads partition 1 (13 records) in
    # generation 1; the leader's extra rejoin makes generation 2 with the
    # same assignment; the client goes on fetching at offset 13 (the end)
    m = member(common, keeps_positions=True)
    m.on_revoked()  # the first join revokes nothing
    m.on_assigned({1})
    for o in range(13):
        m.consumed(rec(1, o))
    m.on_revoked()
    m.on_assigned({1})
    assert offsets(m) == {1: list(range(13))}
    assert common._read_up_to(m, 1, 0, 13)  # settled: what the step waits for
    assert m.assignments == [[1], [1]]


def test_a_reassigned_partition_read_halfway_goes_on_from_there(common: ModuleType) -> None:
    m = member(common, keeps_positions=True)
    m.on_assigned({0, 1})
    for o in range(5):
        m.consumed(rec(1, o))
    m.consumed(rec(0, 0))
    m.on_revoked()
    m.on_assigned({1, 2})  # partition 0 went elsewhere, 2 is new
    for o in range(5, 8):
        m.consumed(rec(1, o))
    assert offsets(m) == {1: list(range(8))}


def test_clients_that_read_again_from_the_committed_offset_start_empty(common: ModuleType) -> None:
    # librdkafka, aiokafka, kafka-python 2.3: every eager rebalance drops the
    # positions; the partition is read again from its committed offset
    m = member(common, keeps_positions=False)
    m.on_assigned({1})
    for o in range(13):
        m.consumed(rec(1, o))
    m.on_revoked()
    m.on_assigned({1})
    assert offsets(m) == {}
    assert not common._read_up_to(m, 1, 0, 13)


def test_lost_partitions_and_a_fresh_count_carry_nothing(common: ModuleType) -> None:
    m = member(common, keeps_positions=True)
    m.on_assigned({1})
    m.consumed(rec(1, 0))
    m.on_lost()  # fenced: kafka-python 3 drops its positions too
    m.on_assigned({1})
    assert offsets(m) == {}
    m.consumed(rec(1, 0))
    m.forget_records()  # the step after a member committed what it read
    assert offsets(m) == {}
    m.on_revoked()
    m.on_assigned({1})
    assert offsets(m) == {}
