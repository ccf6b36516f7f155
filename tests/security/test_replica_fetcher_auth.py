"""The follower's fetcher on a leader that authenticates and enforces ACLs:
it logs in with the broker's own SCRAM credentials; a principal without
``cluster_action`` on the cluster is refused before the replica manager is
asked anything (a client cannot pose as a replica), and the same fetcher
catches up once the brokers' grant exists."""

from __future__ import annotations

import logging

import trio
from replica_harness import (
    FOLLOWER_ID,
    LEADER_ID,
    LeaderReplicas,
    follower_state,
    log_bytes,
    open_follower_log,
    wait_until,
)
from sec_helpers import start_broker

from tailrace.broker.cluster.fetcher import FetcherSettings, ReplicaFetcher
from tailrace.client import Acl, AsyncAdmin


class _Refusals(logging.Handler):
    """Counts the fetcher's warnings about a refused request (emitted on
    the trio thread) and wakes the test at each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.event = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "may not cluster_action" in record.getMessage():
            self.count += 1
            self.event.set()
            self.event = trio.Event()


async def test_only_a_principal_with_cluster_action_may_replicate(nursery, tmp_path) -> None:
    b = await start_broker(
        nursery,
        tmp_path,
        [{"name": "sasl", "authentication": "sasl"}],
        users={"broker-2": "pw-broker", "alice": "pw-a"},
        security={"auth_failure_delay_ms": 0},
    )
    address = b.address("sasl")
    async with AsyncAdmin(address, security=b.admin_security()) as admin:
        await admin.create_topic("t", partitions=1)
        # alice may do anything to the topic, but is no broker
        for op in ("read", "write", "describe", "alter"):
            await admin.create_acls([Acl("User:alice", op, "topic", "t")])
    assert b.broker.context is not None
    replicas = LeaderReplicas()
    b.broker.context.replicas = replicas
    plog = b.broker.context.manager.get("t", 0)
    await replicas.lead("t", 0, plog, epoch=0)
    await replicas.append("t", 0, [b"secret-1", b"secret-2"])

    refusals = _Refusals()
    logger = logging.getLogger("tailrace.broker.cluster.fetcher")
    logger.addHandler(refusals)
    try:
        settings = FetcherSettings(backoff_ms=20)
        flog = open_follower_log(tmp_path / "alice" / "t" / "0")
        posing = ReplicaFetcher(
            FOLLOWER_ID, LEADER_ID, address, settings=settings, security=b.scram("alice")
        )
        await nursery.start(posing.run)
        posing.add_partition("t", 0, 0, flog, follower_state(0))
        with trio.fail_after(30):
            while refusals.count < 2:
                await refusals.event.wait()
        assert flog.log_end_offset == 0
        assert replicas.positions == []
        assert replicas.refused == []  # refused before the replica manager
        posing.close()

        flog2 = open_follower_log(tmp_path / "broker-2" / "t" / "0")
        fetcher = ReplicaFetcher(
            FOLLOWER_ID, LEADER_ID, address, settings=settings, security=b.scram("broker-2")
        )
        await nursery.start(fetcher.run)
        fetcher.add_partition("t", 0, 0, flog2, follower_state(0))
        async with AsyncAdmin(address, security=b.admin_security()) as admin:
            await admin.create_acls(
                [Acl("User:broker-2", "cluster_action", "cluster", "tailrace-cluster")]
            )
        await wait_until(flog2, lambda: flog2.log_end_offset == plog.log_end_offset)
        assert log_bytes(flog2) == log_bytes(plog)
        fetcher.close()
    finally:
        logger.removeHandler(refusals)
