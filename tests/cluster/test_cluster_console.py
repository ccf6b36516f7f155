"""The console of a broker in cluster mode shows the whole cluster as etcd
holds it: every broker (alive or not), the controller, under-replicated and
offline partitions (issue 19: "in a cluster any broker's console shows the
whole cluster"). Real broker processes over a real etcd; the page is read
over HTTP (the browser tests in tests/console cover the pages' behaviour)."""

from __future__ import annotations

import html
import re
import time
import urllib.request

from cluster_harness import BrokerCluster

from tailrace.client import Admin


def _overview(console: str) -> str:
    with urllib.request.urlopen(f"http://{console}/", timeout=30) as response:
        return response.read().decode()


def _table(page: str, table_id: str) -> list[list[str]]:
    body = page.split(f'<table id="{table_id}">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1], flags=re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S) for row in rows]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in row] for row in cells]


def test_a_brokers_console_shows_the_cluster(cluster: BrokerCluster) -> None:
    one = cluster.start_broker(1, "--console", "127.0.0.1:0")
    cluster.start_broker(2)
    console = one.wait_for_line(r"serving the console address=(\S+)").group(1)
    cluster.wait_status(lambda d: d["controller"] is not None, "a controller")
    with Admin(one.address) as admin:
        admin.create_topic("orders", 2)  # replication factor: min(default 3, 2 live brokers)
    cluster.wait_status(lambda d: d["partitions"] == 2, "orders placed")
    cluster.kill(2)
    cluster.wait_status(
        lambda d: [b["alive"] for b in d["brokers"]] == [True, False], "broker 2 gone"
    )
    deadline = time.monotonic() + 60
    while True:  # the console shows what broker 1's watch has seen
        page = _overview(console)
        brokers = _table(page, "cluster-brokers")
        if [row[3] for row in brokers] == ["yes", "no"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [row[0] for row in brokers] == ["1 controller", "2"]
    assert [row[3] for row in brokers] == ["yes", "no"]
    assert brokers[0][1] == one.address
    assert "Controller: broker 1" in html.unescape(re.sub(r"<[^>]+>", "", page))
    under = _table(page, "cluster-under-replicated")
    assert sorted(row[0] for row in under) == ["orders/0", "orders/1"]
    for row in under:
        assert row[1] == "1"  # led by the live broker
        assert row[4] == "1"  # ISR: broker 2 dropped
        assert row[3] == "1, 2" or row[3] == "2, 1"
    assert _table(page, "cluster-offline") == [["None."]]
