"""The partition log's append path in CPU time: small batches, flush none.

    .venv/bin/python tools/bench_append_path.py [--appends 100000] [--repeat 5]

Appends ``--appends`` batches of 10 records of 100 bytes to a fresh log
(``flush none``, one big segment, so no roll or fsync is measured) and
prints appends per CPU-second (``time.process_time``: on a shared machine
CPU time moves less with the load than wall time), best of ``--repeat``
and every run. Used to check that stamping the leader epoch into each batch
(docs/replication.md, "Cost on the append path") costs nothing visible: run
it on the tree before and after a change, alternating, and compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from tailrace.broker.log import LogConfig, PartitionLog
from tailrace.client.records import build_batch


def run(appends: int) -> float:
    data = build_batch([(1_000 + i, None, b"x" * 100, None) for i in range(10)])
    cfg = LogConfig.from_mapping(
        {"segment_bytes": 1 << 30, "preallocate_bytes": 64 << 20, "flush": "none"}
    )
    tmp = tempfile.mkdtemp(prefix="bench-append-")
    try:
        log = PartitionLog.open(os.path.join(tmp, "p"), cfg)
        start = time.process_time()
        for _ in range(appends):
            log.append(data)
        elapsed = time.process_time() - start
        log.close()
    finally:
        shutil.rmtree(tmp)
    return appends / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--appends", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    rates = [run(args.appends) for _ in range(args.repeat)]
    runs = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"{max(rates):,.0f} appends per CPU-second, best of {args.repeat} ({runs})")


if __name__ == "__main__":
    main()
