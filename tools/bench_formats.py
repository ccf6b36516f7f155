"""The native default, decided by measurement: `tailrace bench` with the
native producer and consumer in either record format, interleaved.

Each round runs the same bench command once per format, one right after the
other (native, kafka; the order alternates between rounds), so both see the
same machine: on a busy machine the ratio of the two is what holds, not the
absolute rates. Each run is ``tailrace bench MODE --spawn-broker --json``
with the given records, size and flush mode, plus ``--record-format``.

Usage::

    python tools/bench_formats.py consume [--rounds 5] [--records 1000000] [--record-size 100]
    python tools/bench_formats.py produce [--rounds 5] [--records 1000000] [--record-size 100]

Prints per round the two rates, then the medians, the median of the
per-round ratios (kafka / native) and the median client CPU per record. The
figures and the decision go into docs/format.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

FORMATS = ("native", "kafka")


def run_one(mode: str, fmt: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "tailrace.broker.cli",
        "bench",
        mode,
        "--spawn-broker",
        "--records",
        str(args.records),
        "--record-size",
        str(args.record_size),
        "--flush",
        args.flush,
        "--record-format",
        fmt,
        "--json",
    ]
    if args.wait_idle is not None:
        cmd += ["--wait-idle", str(args.wait_idle)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("consume", "produce"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--record-size", type=int, default=100)
    p.add_argument("--flush", default="none")
    p.add_argument("--wait-idle", type=float, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = FORMATS if r % 2 == 0 else FORMATS[::-1]
        row: dict[str, Any] = {}
        for fmt in order:
            res = run_one(args.mode, fmt, args)
            cpu = sum(res["client_cpu_s"].values())
            row[fmt] = {
                "records_per_sec": res["records_per_sec"],
                "client_cpu_us_per_record": round(cpu / res["records"] * 1e6, 3),
                "broker_cpu_s": res.get("broker_cpu_s"),
                "load_avg_1m": res["load_avg_1m"],
                "errors": res["errors"],
            }
        row["ratio"] = round(row["kafka"]["records_per_sec"] / row["native"]["records_per_sec"], 3)
        rows.append(row)
        if not args.json:
            print(
                f"round {r + 1}: native {row['native']['records_per_sec']:>12,.0f}/s "
                f"({row['native']['client_cpu_us_per_record']:.2f} us CPU/rec)  "
                f"kafka {row['kafka']['records_per_sec']:>12,.0f}/s "
                f"({row['kafka']['client_cpu_us_per_record']:.2f} us CPU/rec)  "
                f"ratio {row['ratio']:.3f}  load {row['native']['load_avg_1m']}",
                flush=True,
            )
    summary = {
        fmt: {
            "median_records_per_sec": statistics.median(x[fmt]["records_per_sec"] for x in rows),
            "median_client_cpu_us_per_record": statistics.median(
                x[fmt]["client_cpu_us_per_record"] for x in rows
            ),
        }
        for fmt in FORMATS
    }
    summary["median_ratio"] = statistics.median(x["ratio"] for x in rows)
    meta = {
        "mode": args.mode,
        "records": args.records,
        "record_size": args.record_size,
        "flush": args.flush,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps({"meta": meta, "rounds": rows, "summary": summary}, indent=1))
    else:
        print(
            f"median: native {summary['native']['median_records_per_sec']:,.0f}/s, "
            f"kafka {summary['kafka']['median_records_per_sec']:,.0f}/s, "
            f"ratio {summary['median_ratio']:.3f}; client CPU/record native "
            f"{summary['native']['median_client_cpu_us_per_record']:.2f} us, kafka "
            f"{summary['kafka']['median_client_cpu_us_per_record']:.2f} us"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
