"""Where a flush-sync group-commit round's time goes in a loaded broker.

A real broker process (this script in ``--role broker``) runs with its
partition's sync round (``PartitionLog._sync``) timed stage by stage, while
``tailrace bench e2e --bootstrap`` drives it with flush sync (by default
2,000 records/s of 100 B, linger 0: the issue-15 goal command). Stages of
one round, in µs:

* ``turns``: from the round's start to the job handed to the sync thread
  (the two scheduling turns that let runnable writers append first);
* ``to thread``: from the hand-off to the job running on the sync thread
  (the thread's wake-up and its wait for the interpreter lock);
* ``fdatasync``: the call itself;
* ``back``: from the job's end to the loop resuming the round (the pipe's
  wake-up of the loop and the lock again);
* ``round``: start to end.

Variants (``--variants``), each applied to the broker process only:

* ``thread``: the code as shipped (``broker/log/syncer.py``);
* ``inline``: the job runs on the trio thread itself, blocking the loop
  for the fdatasync. Not a design (every connection waits on the disk, and
  partitions no longer sync in parallel): it measures what the hand-off to
  another thread costs, as a bound.

Every process is started and stopped through its own handle, on 127.0.0.1.

    .venv/bin/python tools/sync_round.py --repeats 2
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("turns", "to thread", "fdatasync", "back", "round")
VARIANTS = ("thread", "inline")


# --- the broker process -------------------------------------------------


def broker_role(report: str, variant: str, argv: list[str]) -> int:
    from tailrace.broker.log import partition
    from tailrace.broker.log.storage_io import StorageIO

    rounds: list[tuple[int, ...]] = []
    fdatasyncs: list[int] = []
    now = time.perf_counter_ns
    shipped_sync = partition.PartitionLog._sync
    shipped_fdatasync = StorageIO.fdatasync

    async def timed_sync(self: partition.PartitionLog, *, full: bool) -> None:
        marks: dict[str, int] = {}
        run_sync = self._run_sync

        async def timed_run_sync(fn, *args):
            def job(*job_args):
                marks["job"] = now()
                try:
                    return fn(*job_args)
                finally:
                    marks["job_end"] = now()

            marks["submit"] = now()
            try:
                return await run_sync(job, *args)
            finally:
                marks["back"] = now()

        start = now()
        self._run_sync = timed_run_sync
        try:
            await shipped_sync(self, full=full)
        finally:
            self._run_sync = run_sync
        if len(marks) == 4:  # a round that synced something
            rounds.append(
                (start, marks["submit"], marks["job"], marks["job_end"], marks["back"], now())
            )

    def timed_fdatasync(self: StorageIO, fd: int) -> None:
        t0 = now()
        shipped_fdatasync(self, fd)
        fdatasyncs.append(now() - t0)

    partition.PartitionLog._sync = timed_sync
    StorageIO.fdatasync = timed_fdatasync
    if variant == "inline":
        shipped_init = partition.PartitionLog.__init__

        async def on_this_thread(fn, *args):
            return fn(*args)

        def init(self, *args, **kwargs):
            shipped_init(self, *args, **kwargs)
            self._run_sync = on_this_thread

        partition.PartitionLog.__init__ = init

    def dump() -> None:
        stages = {
            "turns": [r[1] - r[0] for r in rounds],
            "to thread": [r[2] - r[1] for r in rounds],
            "fdatasync": fdatasyncs,
            "back": [r[4] - r[3] for r in rounds],
            "round": [r[5] - r[0] for r in rounds],
        }
        Path(report).write_text(json.dumps({"rounds": len(rounds), "stages_ns": stages}))

    atexit.register(dump)
    from tailrace.broker.cli.main import main

    return main(argv)


# --- the orchestrator ---------------------------------------------------


def run_once(variant: str, args: argparse.Namespace, tmp: Path) -> dict:
    from tailrace.broker.bench.spawn import SpawnedBroker

    report = tmp / f"{variant}.json"
    report.unlink(missing_ok=True)
    here = os.path.abspath(__file__)
    broker = SpawnedBroker(
        tmp / f"data-{variant}",
        launcher=[here, "--role", "broker", "--variant", variant, "--report", str(report), "--"],
    )
    broker.start()
    try:
        bench = subprocess.run(
            [
                sys.executable, "-m", "tailrace.broker.cli", "bench", "e2e",
                "--bootstrap", broker.address, "--rate", str(args.rate),
                "--duration", str(args.duration), "--linger-ms", "0", "--flush", "sync",
                "--json",
            ],
            capture_output=True, text=True, timeout=args.duration + 120,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        code = broker.stop()
        broker.close()
    if bench.returncode != 0:
        raise SystemExit(f"bench e2e failed ({bench.returncode}):\n{bench.stderr}")
    if code != 0:
        raise SystemExit(f"the broker exited with {code}:\n" + "\n".join(broker.log_tail))
    result = json.loads(bench.stdout)
    kept = json.loads(report.read_text())
    return {"bench": result, **kept}


def _us(values: list[int], q: float | None) -> str:
    if not values:
        return "-"
    if q is None:
        return f"{statistics.mean(values) / 1000:,.0f}"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000:,.0f}"


def row(variant: str, run: dict) -> str:
    bench = run["bench"]
    e2e, ack = bench["latency_ms"], bench["produce_ack_latency_ms"]
    cells = [
        variant,
        f"{e2e['p50']:.2f} / {e2e['p99']:.2f}",
        f"{ack['p50']:.2f} / {ack['p99']:.2f}",
        f"{run['rounds']:,}",
    ]
    for stage in STAGES:
        values = run["stages_ns"][stage]
        cells.append(f"{_us(values, 0.5)} / {_us(values, None)}")
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="main", choices=["main", "broker"])
    parser.add_argument("--variant", default="thread", choices=VARIANTS)
    parser.add_argument("--report", default="")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds of all variants, alternating"
    )
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args, rest = parser.parse_known_args()
    if rest and rest[0] == "--":
        rest = rest[1:]
    if args.role == "broker":
        return broker_role(args.report, args.variant, rest)
    variants = args.variants.split(",")
    for variant in variants:
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r} (choose from {', '.join(VARIANTS)})")
    header = ["variant", "e2e p50 / p99 ms", "produce-ack p50 / p99 ms", "rounds"]
    header += [f"{stage} p50 / mean µs" for stage in STAGES]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with tempfile.TemporaryDirectory(prefix="sync-round-") as tmp:
        for _ in range(args.repeats):
            for variant in variants:
                print(row(variant, run_once(variant, args, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
