"""Storage-engine micro-benchmark: append throughput per flush mode, group
commit, recovery time of an unclean log, and the cost of idle partitions.

    .venv/bin/python tools/bench_storage.py append    # 1 KiB/16 KiB/1 MiB x none/interval/sync
    .venv/bin/python tools/bench_storage.py group     # 8 writers, 16 KiB, sync vs none
    .venv/bin/python tools/bench_storage.py recovery  # 1 GiB unclean log
    .venv/bin/python tools/bench_storage.py idle      # 1000 idle partitions: start-up, RSS
    .venv/bin/python tools/bench_storage.py all --repeat 3

Each figure is run ``--repeat`` times; the best and the spread (min-max) are
printed, because the machine is shared. Files go to a temporary directory
under ``--dir`` (default: the system temp dir), removed afterwards.
``--profile`` runs the append loop of one size under cProfile instead.

Warm-up: on this KVM guest, the first touch of guest memory the VM has never
used is slow (the hypervisor backs it then): the first GiB written into fresh
page cache ran at ~0.45 GiB/s, the same code at 2-4 GiB/s afterwards. A broker
that has been running reuses its page cache, so the benchmark first touches
``--warmup`` GiB of memory (default 2) and frees it; ``--warmup 0`` shows the
cold figure.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import trio

from tailrace.broker.log import LogConfig, LogManager, PartitionLog, StorageIO
from tailrace.client.records import build_batch

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def make_batch(size: int, *, records: int = 1) -> bytes:
    """A batch of ``records`` records totalling about ``size`` bytes."""
    per = max(1, (size - 61) // records - 8)
    payload = os.urandom(per)
    now = time.time_ns() // 1_000_000
    return build_batch([(now, None, payload, None) for _ in range(records)])


def fmt_spread(values: list[float], unit: str, digits: int = 0) -> str:
    best = max(values)
    if len(values) == 1:
        return f"{best:,.{digits}f} {unit}"
    return f"{best:,.{digits}f} {unit} (runs {min(values):,.{digits}f}-{best:,.{digits}f})"


def fmt_time(values: list[float]) -> str:
    best = min(values)
    if len(values) == 1:
        return f"{best:.2f} s"
    return f"{best:.2f} s (runs {best:.2f}-{max(values):.2f})"


# --- append ----------------------------------------------------------------


async def _append_run(path: str, cfg: LogConfig, data: bytes, count: int, max_s: float):
    log = PartitionLog.open(path, cfg)
    done = 0

    async def flusher() -> None:
        while True:
            await trio.sleep(0.05)
            await log.maybe_flush()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher)
        start = time.perf_counter()
        deadline = start + max_s
        while done < count:
            await log.wait_durable(log.append(data))
            done += 1
            if done % 64 == 0 and time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    await log.aclose()
    return done / elapsed, done * len(data) / elapsed / MiB


APPEND_COUNTS = {1 * KiB: 200_000, 16 * KiB: 30_000, 1 * MiB: 768}


def bench_append(
    base: str, repeat: int, sizes: list[int], modes: list[str], segment_bytes: int
) -> list[dict]:
    """Per batch size, the flush modes take turns run by run, so that the
    machine's drift spreads over all of them rather than favouring one."""
    rows = []
    for size in sizes:
        count = APPEND_COUNTS.get(size, max(100, 512 * MiB // size))
        data = make_batch(size)
        results: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in modes}
        for r in range(repeat):
            for mode in modes:
                path = os.path.join(base, f"append-{size}-{mode}-{r}", "0")
                cfg = LogConfig(flush=mode, segment_bytes=segment_bytes)
                n = count if mode != "sync" else min(count, 5_000)
                per_s, mib_s = trio.run(_append_run, path, cfg, data, n, 4.0)
                results[mode][0].append(per_s)
                results[mode][1].append(mib_s)
                shutil.rmtree(os.path.dirname(path))
        for mode, (rates, mibs) in results.items():
            rows.append({"batch": size, "flush": mode, "appends_s": rates, "mib_s": mibs})
            print(
                f"append {size // KiB:5d} KiB flush={mode:8s} "
                f"{fmt_spread(rates, 'appends/s'):42s} {fmt_spread(mibs, 'MiB/s')}",
                flush=True,
            )
    return rows


# --- group commit ------------------------------------------------------------


class TimedIO(StorageIO):
    """Counts fdatasync calls and their time (thread-safe enough: one
    sync runs at a time per partition, and the bench has one partition)."""

    def __init__(self) -> None:
        self.syncs = 0
        self.sync_seconds = 0.0

    def fdatasync(self, fd: int) -> None:
        start = time.perf_counter()
        super().fdatasync(fd)
        self.sync_seconds += time.perf_counter() - start
        self.syncs += 1


async def _group_run(
    path: str, cfg: LogConfig, data: bytes, writers: int, per_writer: int, depth: int = 1
):
    io = TimedIO()
    log = PartitionLog.open(path, cfg, io=io)

    async def writer() -> None:
        if depth == 1:
            for _ in range(per_writer):
                await log.wait_durable(log.append(data))
            return
        # A pipelining writer, as a producer connection with `depth` requests
        # in flight: it appends again while earlier appends await their sync.
        slots = trio.Semaphore(depth)

        async def ack(result) -> None:
            try:
                await log.wait_durable(result)
            finally:
                slots.release()

        async with trio.open_nursery() as acks:
            for _ in range(per_writer):
                await slots.acquire()
                acks.start_soon(ack, log.append(data))

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(writers):
            nursery.start_soon(writer)
    elapsed = time.perf_counter() - start
    await log.aclose()
    n = writers * per_writer
    return n / elapsed, n * len(data) / elapsed / MiB, io


def bench_group(base: str, repeat: int, total: int = 16_000) -> list[dict]:
    """Closed-loop writers: each appends, waits for its ack, appends again
    (depth 1); or keeps `depth` appends awaiting their acks, as a producer
    connection with that many requests in flight does (the broker appends a
    connection's requests in order and waits for durability in a task per
    request, so they share syncs)."""
    rows = []
    data = make_batch(16 * KiB)
    for writers, depth in ((8, 1), (32, 1), (8, 5)):
        best = {}
        for mode in ("none", "sync"):
            rates, mibs, notes = [], [], []
            for r in range(repeat):
                path = os.path.join(base, f"group-{writers}-{depth}-{mode}-{r}", "0")
                cfg = LogConfig(flush=mode)
                per_s, mib_s, io = trio.run(
                    _group_run, path, cfg, data, writers, total // writers, depth
                )
                rates.append(per_s)
                mibs.append(mib_s)
                if io.syncs:
                    notes.append((total / io.syncs, io.sync_seconds / io.syncs * 1e3))
                shutil.rmtree(os.path.dirname(path))
            best[mode] = max(rates)
            rows.append(
                {
                    "flush": mode,
                    "writers": writers,
                    "depth": depth,
                    "appends_s": rates,
                    "mib_s": mibs,
                }
            )
            extra = ""
            if notes:
                per_sync = sum(a for a, _ in notes) / len(notes)
                lat = min(b for _, b in notes)
                extra = f"  [{per_sync:.1f} appends per fdatasync, fdatasync mean {lat:.2f} ms]"
            print(
                f"group {writers:2d} writers depth {depth} 16 KiB flush={mode:5s} "
                f"{fmt_spread(rates, 'appends/s'):42s} {fmt_spread(mibs, 'MiB/s')}{extra}",
                flush=True,
            )
        print(
            f"group {writers:2d} writers depth {depth}: none / sync (best of each) = "
            f"{best['none'] / best['sync']:.2f}x",
            flush=True,
        )
    return rows


# --- recovery ----------------------------------------------------------------


def _write_unclean_log(path: str, total: int, batch_size: int) -> int:
    data = make_batch(batch_size, records=max(1, batch_size // 1024))
    log = PartitionLog.open(path, LogConfig(flush="none"))
    written = 0
    while written < total:
        log.append(data)
        written += len(data)
    leo = log.log_end_offset
    log.abandon()  # kill -9: no trim, no index fsync, no snapshot, no marker
    return leo


def _drop_cache(path: str) -> None:
    for name in os.listdir(path):
        fd = os.open(os.path.join(path, name), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def bench_recovery(base: str, repeat: int, total: int = GiB, batch_size: int = 16 * KiB) -> dict:
    hot, cold = [], []
    for r in range(repeat):
        path = os.path.join(base, f"recovery-{r}", "0")
        leo = _write_unclean_log(path, total, batch_size)
        os.sync()  # the crash came after writeback: time recovery, not flushing the bench's writes
        for label, times in (("page cache", hot), ("cold cache", cold)):
            if label == "cold cache":
                _drop_cache(path)
            start = time.perf_counter()
            log = PartitionLog.open(path, LogConfig(flush="none"), recovery_point=0, clean=False)
            times.append(time.perf_counter() - start)
            assert log.log_end_offset == leo, (log.log_end_offset, leo)
            log.abandon()  # stays unclean for the next measurement
        shutil.rmtree(os.path.dirname(path))
    print(
        f"recovery {total / GiB:.1f} GiB of {batch_size // KiB} KiB batches, "
        f"every batch CRC-checked: page cache {fmt_time(hot)}; cold cache {fmt_time(cold)}",
        flush=True,
    )
    return {"bytes": total, "batch": batch_size, "hot_s": hot, "cold_s": cold}


# --- idle partitions ------------------------------------------------------------

_IDLE_CHILD = r"""
import json, os, sys, time
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
from tailrace.broker.log import LogManager
from tailrace.client.records import build_batch
import trio
before = rss()
start = time.perf_counter()
mgr = LogManager.open(sys.argv[1])
elapsed = time.perf_counter() - start
after = rss()
fds = len(os.listdir("/proc/self/fd"))
n = sum(1 for _ in mgr.logs())
data = build_batch([(time.time_ns() // 1000000, None, bytes(1000), None)])
for _key, log in mgr.logs():
    log.append(data)
written = rss()
fds_written = len(os.listdir("/proc/self/fd"))
trio.run(mgr.aclose)
print(json.dumps({"open_s": elapsed, "rss_before": before, "rss_after": after, "fds": fds,
                  "rss_written": written, "fds_written": fds_written, "partitions": n}))
"""


def bench_idle(base: str, repeat: int, partitions: int = 1000) -> dict:
    path = os.path.join(base, "idle")

    async def build() -> None:
        mgr = LogManager.open(path)
        await mgr.create_topic("idle", partitions)
        data = make_batch(KiB)
        for p in range(partitions):
            mgr.get("idle", p).append(data)
        await mgr.aclose()

    trio.run(build)
    results: dict[str, list[dict]] = {"clean": [], "unclean": []}
    for _ in range(repeat):
        for kind in ("clean", "unclean"):
            if kind == "unclean":
                os.unlink(os.path.join(path, "~clean-shutdown"))
            out = subprocess.run(
                [sys.executable, "-c", _IDLE_CHILD, path],
                check=True,
                capture_output=True,
                text=True,
            )
            results[kind].append(json.loads(out.stdout))
    for kind, runs in results.items():
        opens = [r["open_s"] for r in runs]
        deltas = [(r["rss_after"] - r["rss_before"]) / MiB for r in runs]
        totals = [r["rss_after"] / MiB for r in runs]
        woken = [(r["rss_written"] - r["rss_before"]) / MiB for r in runs]
        print(
            f"idle {partitions} partitions ({kind} start): open {fmt_time(opens)}; "
            f"RSS {min(totals):.0f} MiB total, +{min(deltas):.1f} MiB for the logs, "
            f"{runs[0]['fds']} fds; after one 1 KiB append to each: "
            f"+{min(woken):.1f} MiB, {runs[0]['fds_written']} fds",
            flush=True,
        )
    shutil.rmtree(path)
    return results


# --- profile -----------------------------------------------------------------------


def profile_append(base: str, size: int, mode: str) -> None:
    data = make_batch(size)
    path = os.path.join(base, "profile", "0")
    count = max(200, 256 * MiB // len(data))
    prof = cProfile.Profile()
    prof.enable()
    trio.run(_append_run, path, LogConfig(flush=mode), data, count, 10.0)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    shutil.rmtree(os.path.dirname(path))


def warm_up(gib: float) -> None:
    if gib <= 0:
        return
    start = time.perf_counter()
    block = bytearray(int(gib * GiB))  # zero-filled: every page touched
    del block
    print(f"# warm-up: touched {gib:g} GiB in {time.perf_counter() - start:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["append", "group", "recovery", "idle", "all"])
    parser.add_argument("--dir", default=None, help="parent directory for the test files")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--recovery-batch", type=int, default=16 * KiB, help="batch size (bytes)")
    parser.add_argument("--recovery-bytes", type=int, default=GiB)
    parser.add_argument("--profile", type=int, metavar="BATCH_BYTES", help="profile appends")
    parser.add_argument("--flush", default="none", help="flush mode for --profile")
    parser.add_argument("--warmup", type=float, default=2.0, help="GiB of memory to touch first")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(APPEND_COUNTS),
        help="append: batch sizes in bytes, comma-separated",
    )
    parser.add_argument(
        "--segment-bytes", type=int, default=256 * MiB, help="append: segment_bytes"
    )
    parser.add_argument(
        "--modes",
        type=lambda s: s.split(","),
        default=["none", "interval", "sync"],
        help="append: flush modes, comma-separated",
    )
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="tailrace-bench-", dir=args.dir)
    print(f"# {os.cpu_count()} CPUs, python {sys.version.split()[0]}, files in {base}", flush=True)
    warm_up(args.warmup)
    try:
        if args.profile:
            profile_append(base, args.profile, args.flush)
            return 0
        jobs: dict[str, Callable[[], object]] = {
            "append": lambda: bench_append(
                base, args.repeat, args.sizes, args.modes, args.segment_bytes
            ),
            "group": lambda: bench_group(base, args.repeat),
            "recovery": lambda: bench_recovery(
                base, args.repeat, args.recovery_bytes, args.recovery_batch
            ),
            "idle": lambda: bench_idle(base, args.repeat),
        }
        for name, job in jobs.items():
            if args.what in (name, "all"):
                job()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
