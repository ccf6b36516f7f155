"""How the broker's cost grows with partitions and with connected consumers.

Two sweeps, each point a fresh broker subprocess in a temporary directory:

* partitions (1, 10, 100, 1000): ``tailrace bench produce --spawn-broker``
  into a topic of P partitions with 16 KiB batches, so the sticky
  partitioner moves to another partition every ~140 records and every
  partition gets batches; reports records/s, the broker's CPU seconds per
  million records and its peak RSS.
* consumers (1, 10, 100): one partition filled with 1 MiB batches, then C
  consumer processes read all of it at once over their own connections
  (bench_fetch.py's raw receivers, so the broker is what is measured);
  reports the aggregate GiB/s and the broker's CPU seconds, context
  switches and syscalls per GiB served.

Usage::

    python tools/bench_scaling.py [--partitions 1,10,100,1000] [--consumers 1,10,100]
                                  [--records 1000000] [--gib 0.25] [--json]

The figures go into docs/benchmarks.md ("Scaling").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import bench_fetch  # noqa: E402 - the sibling tool, by path


def produce_point(partitions: int, records: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "tailrace.broker.cli",
        "bench",
        "produce",
        "--spawn-broker",
        "--records",
        str(records),
        "--record-size",
        "100",
        "--partitions",
        str(partitions),
        "--flush",
        "none",
        "--batch-bytes",
        "16384",
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT.parent)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "partitions": partitions,
        "records_per_sec": round(result["records_per_sec"]),
        "broker_cpu_s_per_million": round(result["broker_cpu_s"] / (records / 1e6), 3),
        "broker_rss_mib": result["broker_rss_mib"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--partitions", default="1,10,100,1000")
    parser.add_argument("--consumers", default="1,10,100")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--gib", type=float, default=0.25, help="GiB each consumer reads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: dict[str, list] = {"partitions": [], "consumers": []}
    for p in (int(x) for x in args.partitions.split(",") if x):
        row = produce_point(p, args.records)
        rows["partitions"].append(row)
        if not args.json:
            print(
                f"partitions={p:5d}  {row['records_per_sec']:>9,} records/s  "
                f"broker {row['broker_cpu_s_per_million']:.2f} CPU s per million  "
                f"peak RSS {row['broker_rss_mib']:.0f} MiB",
                flush=True,
            )
    for c in (int(x) for x in args.consumers.split(",") if x):
        row = bench_fetch.run_one(True, c, args.gib)
        rows["consumers"].append(row)
        if not args.json:
            print(bench_fetch.describe(row), flush=True)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
