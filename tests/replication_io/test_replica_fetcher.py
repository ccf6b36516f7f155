"""The follower's fetcher against a real leader broker on loopback: a
follower catches up byte for byte and follows appends through the long
poll, a diverged tail is cut by leader epochs (KIP-101/KIP-279, never to the
high watermark), and a stale or unknown epoch is fenced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from harness import broker_config
from replica_harness import (
    FOLLOWER_ID,
    LEADER_ID,
    LeaderReplicas,
    batch,
    follower_state,
    log_bytes,
    open_follower_log,
    wait_for,
    wait_until,
)

from tailrace.broker.app import Broker
from tailrace.broker.cluster.fetcher import FetcherSettings, ReplicaFetcher, peer_security
from tailrace.broker.log import PartitionLog
from tailrace.client import AsyncAdmin
from tailrace.client.errors import (
    FencedLeaderEpochError,
    InvalidConfigError,
    UnknownLeaderEpochError,
)


@dataclass
class Leader:
    broker: Broker
    address: str
    replicas: LeaderReplicas
    log: PartitionLog


@pytest.fixture
async def leader(nursery: trio.Nursery, tmp_path: Path) -> Leader:
    """A broker holding topic t (one partition), whose replica manager is
    LeaderReplicas; it leads nothing until a test calls ``lead``."""
    b = Broker(broker_config(tmp_path / "leader"))
    listeners = await nursery.start(b.serve)
    address = listeners[0].address
    async with AsyncAdmin(address) as admin:
        await admin.create_topic("t", partitions=1)
    assert b.context is not None
    replicas = LeaderReplicas()
    b.context.replicas = replicas
    return Leader(b, address, replicas, b.context.manager.get("t", 0))


def _fetcher(leader: Leader, **settings: int) -> ReplicaFetcher:
    return ReplicaFetcher(
        FOLLOWER_ID,
        LEADER_ID,
        leader.address,
        settings=FetcherSettings(**{"backoff_ms": 20, **settings}),
    )


class RecordingLog(PartitionLog):
    """A real PartitionLog that remembers where it was truncated and its
    high watermark at that moment."""

    truncations: list[tuple[int, int]]

    async def truncate_to(self, offset: int) -> None:
        self.truncations.append((offset, self.high_watermark))
        await super().truncate_to(offset)


async def test_a_follower_catches_up_byte_for_byte_and_follows_appends(
    leader: Leader, nursery: trio.Nursery, tmp_path: Path
) -> None:
    replicas, plog = leader.replicas, leader.log
    await replicas.lead("t", 0, plog, epoch=0)
    for i in range(3):
        await replicas.append("t", 0, [b"zero-%d-%d" % (i, j) for j in range(5)])
    await replicas.lead("t", 0, plog, epoch=1)
    for i in range(40):
        await replicas.append("t", 0, [b"one-%d-%d" % (i, j) * 30 for j in range(20)])
    assert plog.high_watermark == 0  # the follower has not fetched yet

    flog = open_follower_log(tmp_path / "follower" / "t" / "0")
    # many rounds: each fetch brings at most ~16 KiB
    fetcher = _fetcher(leader, partition_max_bytes=16 << 10, max_wait_ms=30_000)
    await nursery.start(fetcher.run)
    fetcher.add_partition("t", 0, 1, flog, follower_state(1))

    await wait_until(flog, lambda: flog.log_end_offset == plog.log_end_offset)
    assert fetcher.rounds > 2
    assert log_bytes(flog) == log_bytes(plog)
    assert flog.epoch_cache == plog.epoch_cache
    assert [e.epoch for e in flog.epoch_cache.entries()] == [0, 1]
    # the follower's reported position is what moves the leader's watermark
    await wait_until(plog, lambda: plog.high_watermark == plog.log_end_offset)

    # Parked: the follower's fetch at the log end is held by the leader (30 s
    # max wait). An append answers that very request: one round, no new one.
    end = plog.log_end_offset
    await wait_for(replicas, lambda: replicas.positions[-1] == end)
    rounds = fetcher.rounds
    new_end = await replicas.append("t", 0, [b"late"])
    await wait_until(flog, lambda: flog.log_end_offset == new_end)
    assert fetcher.rounds == rounds + 1
    assert log_bytes(flog) == log_bytes(plog)
    # the follower's watermark follows the leader's, capped by its own end
    await wait_until(plog, lambda: plog.high_watermark == new_end)
    assert flog.high_watermark <= flog.log_end_offset

    await fetcher.remove_partition("t", 0)
    assert fetcher.partitions() == []
    fetcher.close()


async def test_a_diverged_tail_is_cut_by_epochs_not_to_the_high_watermark(
    leader: Leader, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """KIP-279's fast failover: after the shared epoch 0, the follower led
    epochs 1 and 3 and the leader epochs 2 and 4, each unknown to the other.
    Asked for 3, the leader names 2 (ending at 6), which the follower never
    saw: it cuts to the end of its own 1 (5) and asks again; the answer for
    1 (the leader's 0, ending at 3) cuts its tail exactly where the logs
    part. Its high watermark (0) plays no part: cutting there would refetch
    the shared records (and, with a leader that lost them, lose them)."""
    replicas, plog = leader.replicas, leader.log
    await replicas.lead("t", 0, plog, epoch=0)
    await replicas.append("t", 0, [b"a0", b"a1", b"a2"])  # 0-2
    shared = log_bytes(plog)

    flog = RecordingLog.open(str(tmp_path / "follower" / "t" / "0"), plog.config)
    flog.truncations = []
    flog.set_replicated(True)
    await flog.append_as_follower(shared)  # 0-2 as the leader wrote them
    await flog.become_leader(1)
    flog.append(batch([b"f1-a", b"f1-b"]))  # 3-4, never replicated
    await flog.become_leader(3)
    flog.append(batch([b"f3"]))  # 5
    assert [tuple(e) for e in flog.epoch_cache.entries()] == [(0, 0), (1, 3), (3, 5)]
    assert flog.high_watermark == 0

    await replicas.lead("t", 0, plog, epoch=2)
    await replicas.append("t", 0, [b"l2-a"])  # 3
    await replicas.append("t", 0, [b"l2-b", b"l2-c"])  # 4-5
    await replicas.lead("t", 0, plog, epoch=4)
    await replicas.append("t", 0, [b"l4"])  # 6
    assert [tuple(e) for e in plog.epoch_cache.entries()] == [(0, 0), (2, 3), (4, 6)]

    fetcher = _fetcher(leader)
    await nursery.start(fetcher.run)
    fetcher.add_partition("t", 0, 4, flog, follower_state(4))
    await wait_until(flog, lambda: flog.log_end_offset == plog.log_end_offset == 7)
    assert flog.truncations == [(5, 0), (3, 0)]
    assert log_bytes(flog) == log_bytes(plog)
    assert flog.epoch_cache == plog.epoch_cache
    fetcher.close()


async def test_a_stale_or_unknown_epoch_is_fenced_until_the_new_state_arrives(
    leader: Leader, nursery: trio.Nursery, tmp_path: Path
) -> None:
    replicas, plog = leader.replicas, leader.log
    await replicas.lead("t", 0, plog, epoch=2)
    await replicas.append("t", 0, [b"x", b"y"])
    flog = open_follower_log(tmp_path / "follower" / "t" / "0")
    fetcher = _fetcher(leader)
    await nursery.start(fetcher.run)

    # a follower still in epoch 1 (a zombie of the old leadership)
    fetcher.add_partition("t", 0, 1, flog, follower_state(1))
    await wait_for(
        replicas, lambda: sum(isinstance(e, FencedLeaderEpochError) for e in replicas.refused) >= 2
    )
    assert flog.log_end_offset == 0
    assert replicas.positions == []  # nothing it said counted as a position
    # one that heard of epoch 3 before the leader did
    fetcher.add_partition("t", 0, 3, flog, follower_state(3))
    await wait_for(
        replicas, lambda: any(isinstance(e, UnknownLeaderEpochError) for e in replicas.refused)
    )
    assert flog.log_end_offset == 0

    # the replica manager hands it the current state: it catches up
    fetcher.add_partition("t", 0, 2, flog, follower_state(2))
    await wait_until(flog, lambda: flog.log_end_offset == plog.log_end_offset)
    assert log_bytes(flog) == log_bytes(plog)
    fetcher.close()


async def test_a_follower_that_heard_of_the_epoch_first_retries_soon(
    leader: Leader, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A failover: the follower learns the new leader from etcd a moment
    before the leader takes the partition up, and its first fetches are
    refused (UNKNOWN_LEADER_EPOCH). It asks again after state_backoff_ms,
    not after backoff_ms (here far beyond the test's bound, which asserts
    no timing): once the leader leads in that epoch, it catches up."""
    replicas, plog = leader.replicas, leader.log
    await replicas.lead("t", 0, plog, epoch=2)
    await replicas.append("t", 0, [b"x", b"y"])
    flog = open_follower_log(tmp_path / "follower" / "t" / "0")
    fetcher = _fetcher(leader, backoff_ms=3_600_000)
    await nursery.start(fetcher.run)
    fetcher.add_partition("t", 0, 3, flog, follower_state(3))
    await wait_for(
        replicas, lambda: any(isinstance(e, UnknownLeaderEpochError) for e in replicas.refused)
    )
    await replicas.lead("t", 0, plog, epoch=3)  # the leader catches up with etcd
    await replicas.append("t", 0, [b"z"])
    await wait_until(flog, lambda: flog.log_end_offset == plog.log_end_offset == 3)
    assert log_bytes(flog) == log_bytes(plog)
    fetcher.close()


def test_peer_security_comes_from_the_cluster_settings(tmp_path: Path) -> None:
    assert peer_security(broker_config(tmp_path)) is None
    (tmp_path / "pw").write_text("secret\n")
    security = peer_security(
        broker_config(
            tmp_path,
            cluster__peer_sasl_username="broker-2",
            cluster__peer_sasl_password_file=str(tmp_path / "pw"),
        )
    )
    assert security is not None
    assert (security.sasl_mechanism, security.username, security.uses_tls) == (
        "SCRAM-SHA-256",
        "broker-2",
        False,
    )
    assert security.resolve_password() == "secret"
    with pytest.raises(InvalidConfigError, match="password"):
        peer_security(broker_config(tmp_path, cluster__peer_sasl_username="broker-2"))
