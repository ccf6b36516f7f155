"""Group administration through AsyncAdmin against a real broker: list,
describe (members, assignment, committed offset, log end, lag), reset
offsets (earliest, latest, offset, time) only for inactive groups, delete."""

from __future__ import annotations

import pytest
import trio
from group_helpers import create_topic, start_broker

from tailrace.client import AsyncAdmin, AsyncConsumer, AsyncProducer
from tailrace.client.errors import (
    GroupIdNotFoundError,
    GroupNotEmptyError,
    OffsetOutOfRangeError,
)

BASE_TS = 1_700_000_000_000


async def _fill(address: str) -> None:
    """Three partitions of ten records; record i has timestamp BASE_TS + i s."""
    async with AsyncProducer(address, linger_ms=1) as producer:
        for i in range(10):
            for p in range(3):
                await producer.send("t", b"%d" % i, partition=p, timestamp=BASE_TS + i * 1000)
        await producer.flush()


async def test_describe_shows_members_assignment_and_lag_then_delete(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 3, flush="none")
    await _fill(b.address)
    async with AsyncAdmin(b.address) as admin:
        assert await admin.list_groups() == []
        with pytest.raises(GroupIdNotFoundError):
            await admin.describe_group("g")
        async with AsyncConsumer(
            b.address, group_id="g", auto_offset_reset="earliest", enable_auto_commit=False
        ) as c:
            c.subscribe(["t"])
            got = []
            with trio.fail_after(10):
                while len(got) < 30:
                    got += await c.poll(timeout_ms=500)
            await c.commit({("t", 0): 10, ("t", 1): 4})
            desc = await admin.describe_group("g")
            assert (desc.state, len(desc.members)) == ("Stable", 1)
            (member,) = desc.members
            assert member.member_id == c.member_id
            assert member.assignment == [("t", 0), ("t", 1), ("t", 2)]
            rows = {
                o.partition: (o.committed_offset, o.log_end_offset, o.lag) for o in desc.offsets
            }
            assert rows == {0: (10, 10, 0), 1: (4, 10, 6), 2: (None, 10, None)}
            assert all(o.member_id == c.member_id for o in desc.offsets)
            listed = await admin.list_groups()
            assert [(g.group_id, g.state, g.member_count) for g in listed] == [("g", "Stable", 1)]
            with pytest.raises(GroupNotEmptyError):
                await admin.delete_group("g")
            with pytest.raises(GroupNotEmptyError):
                await admin.reset_offsets("g", "t", "earliest")
        desc = await admin.describe_group("g")
        assert (desc.state, desc.members) == ("Empty", [])
        assert [o.member_id for o in desc.offsets] == [None, None]
        assert [g.state for g in await admin.list_groups(["empty"])] == ["Empty"]
        await admin.delete_group("g")
        assert await admin.list_groups() == []
        with pytest.raises(GroupIdNotFoundError):
            await admin.delete_group("g")


async def test_reset_offsets_of_an_inactive_group(nursery, tmp_path):
    b = await start_broker(nursery, tmp_path)
    await create_topic(b.address, "t", 3, flush="none")
    await _fill(b.address)

    async def committed(admin):
        return {o.partition: o.committed_offset for o in (await admin.describe_group("g")).offsets}

    async with AsyncAdmin(b.address) as admin:
        assert await admin.reset_offsets("g", "t", "latest") == {0: 10, 1: 10, 2: 10}
        assert await committed(admin) == {0: 10, 1: 10, 2: 10}
        assert await admin.reset_offsets("g", "t", "earliest", [1]) == {1: 0}
        assert await committed(admin) == {0: 10, 1: 0, 2: 10}
        assert await admin.reset_offsets("g", "t", ("offset", 7), dry_run=True) == {
            0: 7,
            1: 7,
            2: 7,
        }
        assert await committed(admin) == {0: 10, 1: 0, 2: 10}  # a dry run changes nothing
        assert await admin.reset_offsets("g", "t", ("offset", 7)) == {0: 7, 1: 7, 2: 7}
        assert await admin.reset_offsets("g", "t", ("time", BASE_TS + 3500)) == {0: 4, 1: 4, 2: 4}
        assert await admin.reset_offsets("g", "t", ("time", BASE_TS + 99_000)) == {
            0: 10,
            1: 10,
            2: 10,
        }
        with pytest.raises(OffsetOutOfRangeError):
            await admin.reset_offsets("g", "t", ("offset", 11))
        assert await committed(admin) == {0: 10, 1: 10, 2: 10}
        with pytest.raises(ValueError, match="reset to"):
            await admin.reset_offsets("g", "t", "yesterday")

    # a consumer of the group starts where the reset put it
    async with AsyncAdmin(b.address) as admin:
        await admin.reset_offsets("g", "t", ("offset", 8), [2])
    async with AsyncConsumer(b.address, group_id="g", enable_auto_commit=False) as c:
        c.subscribe(["t"])
        records = []
        with trio.fail_after(10):
            while len(records) < 2:
                records += await c.poll(timeout_ms=500)
        records += await c.poll(timeout_ms=100)
        assert [(r.partition, r.offset) for r in records] == [(2, 8), (2, 9)]
