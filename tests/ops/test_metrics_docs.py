"""docs/operations.md lists every metric the code defines, with its type and
labels, and a live scrape exposes exactly those families."""

from __future__ import annotations

import re

from ops_helpers import ROOT, batch, create_topic, http_get, metered_broker, produce

from tailrace.broker.metrics.definitions import SPECS
from tailrace.client.protocol import OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic
from tailrace.client.transport import BrokerConnection

DOC = ROOT / "docs" / "operations.md"
MARKER = "<!-- tests/ops/test_metrics_docs.py checks this table"
ROW = re.compile(r"^\| `(tailrace_\w+)` \| (counter|gauge|histogram) \| (.*?) \| (.+) \|$")


def _documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MARKER))
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in lines[start + 3 :]:  # the marker, the header, the separator
        if not line.startswith("|"):
            break
        m = ROW.match(line)
        assert m, f"malformed row: {line}"
        name, kind, labels, _meaning = m.groups()
        assert name not in rows, f"{name} listed twice"
        rows[name] = (kind, tuple(re.findall(r"`(\w+)`", labels)))
    return rows


def test_the_docs_list_every_metric_with_its_type_and_labels():
    assert _documented() == {s.name: (s.kind, s.labels) for s in SPECS}


async def test_a_scrape_exposes_exactly_the_specified_families(nursery, tmp_path):
    broker = metered_broker(tmp_path / "data")
    listeners = await nursery.start(broker.serve)
    conn = await BrokerConnection.connect(nursery, listeners[0].address)
    await create_topic(conn, "events")
    await produce(conn, "events", batch(0, n=5))
    await conn.request(
        OffsetCommitRequest(
            group_id="g",
            topics=[
                OffsetCommitTopic(
                    name="events", partitions=[OffsetCommitPartition(partition=0, offset=2)]
                )
            ],
        )
    )
    assert broker.metrics is not None
    text = (await http_get(broker.metrics.address, "/metrics")).body.decode()

    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    specs = {s.name: s for s in SPECS}
    assert types == {name: s.kind for name, s in specs.items()}

    families = sorted(specs, key=len, reverse=True)  # longest prefix first
    seen = set()
    for name, labels in re.findall(r"^(tailrace_\w+)(?:\{(.*)\})? \S+$", text, re.M):
        family = next(f for f in families if name == f or name.startswith(f + "_"))
        keys = {k for k in re.findall(r'(\w+)="', labels)} - {"le"}
        assert keys == set(specs[family].labels), (name, labels)
        seen.add(family)
    # every family had samples here except the ones nothing has moved yet
    # and cluster mode's (tests/cluster/test_cluster_clients.py scrapes those)
    assert set(specs) - seen <= {
        "tailrace_partition_errors_total",
        "tailrace_partition_leader",
        "tailrace_partition_in_sync_replicas",
        "tailrace_partition_assigned_replicas",
        "tailrace_partition_follower_lag_records",
        "tailrace_partitions_under_replicated",
        "tailrace_isr_changes_total",
    }
    broker.shutdown()
