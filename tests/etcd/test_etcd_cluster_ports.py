"""The etcd harness's ports (broker/faultkit/etcd_cluster.py), with real etcd
processes: free ports come from below the ephemeral range, and a new
cluster whose port was taken between picking and binding starts again on
fresh ports instead of failing."""

from __future__ import annotations

import socket

import pytest

from tailrace.broker.faultkit import etcd_cluster
from tailrace.broker.faultkit.etcd_cluster import EtcdCluster, free_port


def test_free_ports_lie_below_the_ephemeral_range_and_are_bindable():
    low = etcd_cluster._ephemeral_low()
    for _ in range(20):
        port = free_port()
        assert etcd_cluster._LOW_PORT <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_new_cluster_whose_port_was_taken_starts_on_fresh_ports(tmp_path):
    cluster = EtcdCluster(tmp_path / "etcd", members=3, heartbeat_ms=50, election_ms=500)
    taken = cluster.members[1].peer_port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen(1)
        try:
            cluster.start(timeout=30)
            assert all(m.healthy(timeout=2) for m in cluster.members)
            assert taken not in {p for m in cluster.members for p in (m.client_port, m.peer_port)}
            assert len({m.initial_cluster for m in cluster.members}) == 1
            assert all(m.peer_url in cluster.members[0].initial_cluster for m in cluster.members)
        finally:
            cluster.stop()


def test_a_cluster_given_its_ports_is_not_moved(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        cluster = EtcdCluster(
            tmp_path / "etcd", members=1, client_ports=[port], peer_ports=[free_port()]
        )
        with pytest.raises(RuntimeError, match="exited"):
            cluster.start(timeout=30)
        assert cluster.members[0].client_port == port
