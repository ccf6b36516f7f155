"""Log-cleaner benchmarks (issue 17): cleaner throughput and peak memory,
and produce latency with and without the cleaner at work.

``throughput``: in one process, a compacted PartitionLog (flush none, 64 MiB
segments) is filled with ``--keys`` distinct keys (16 B keys, ``--value-bytes``
values, native batches of 1000 records), then as many updates of random keys
(so most batches lose some records and are rewritten as magic 2), rolled,
and cleaned once (``force``, a key map big enough for every key). Printed:
wall and CPU seconds of the cleaning, bytes read and written, MiB/s read
(log bytes the cleaner got through per wall second), records kept and
removed, and the process's peak RSS growth during the cleaning (VmHWM
reset through /proc/self/clear_refs before it: the key map, the batches in
flight, the page cache of mapped files that the process touched).

``produce``: a broker subprocess (cleaner every 200 ms); ``tailrace bench
produce`` against it twice, interleaved ``--rounds`` times: once with the
broker's cleaner idle, once while it cleans a compacted topic filled with
``--fill-keys`` keys twice over (re-filled before each round, so every
cleaning has work). Printed: the bench's p50/p99 produce-ack latency and
rate for both, the broker's cleanings during the timed run, and the load
average.

    python tools/bench_cleaner.py throughput --keys 1000000
    python tools/bench_cleaner.py produce --records 1000000 --rounds 3

Figures go into docs/benchmarks.md ("Log compaction").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import trio

from tailrace.broker.faultkit.etcd_cluster import free_port  # below the ephemeral range
from tailrace.broker.log import LogConfig, PartitionLog
from tailrace.broker.log.cleaner import CleanerSettings
from tailrace.client import Admin, Producer
from tailrace.client.records import build_batch

MIB = 1024 * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="bench-cleaner-")
    try:
        cfg = LogConfig(
            cleanup_policy="compact",
            flush="none",
            segment_bytes=64 * MIB,
            preallocate_bytes=64 * MIB,
        )
        log = PartitionLog.open(os.path.join(root, "p"), cfg)
        value = bytes(range(256)) * (args.value_bytes // 256 + 1)
        value = value[: args.value_bytes]
        rng = random.Random(1)
        ts = 1_700_000_000_000
        keys = args.keys
        filled = time.perf_counter()
        for start in range(0, keys, 1000):
            log.append(
                build_batch(
                    [(ts, b"key-%012d" % i, value, None) for i in range(start, start + 1000)]
                )
            )
        for _ in range(0, keys, 1000):
            log.append(
                build_batch(
                    [(ts + 1, b"key-%012d" % rng.randrange(keys), value, None) for _ in range(1000)]
                )
            )
        log.update_config(LogConfig(cleanup_policy="compact", flush="none", segment_bytes=1))
        log.append(build_batch([(ts + 2, b"roll", value, None)]))  # seals the last segment
        log.update_config(cfg)
        trio.run(log.flush)
        fill_s = time.perf_counter() - filled
        size = log.size_bytes
        settings = CleanerSettings(key_map_bytes=max(64 * MIB, keys * 160))
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
        rss_before = _status_kib("VmRSS")
        anon_before = _status_kib("RssAnon")
        anon_peak = [anon_before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.02):
                anon_peak[0] = max(anon_peak[0], _status_kib("RssAnon"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        cpu = time.process_time()
        wall = time.perf_counter()
        try:
            result = trio.run(lambda: log.clean(settings, force=True))
        finally:
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            sampling.set()
            sampler.join()
        peak = _status_kib("VmHWM")
        assert result is not None
        log.close()
        return {
            "keys": keys,
            "records": 2 * keys + 1,
            "value_bytes": args.value_bytes,
            "log_mib": round(size / MIB, 1),
            "fill_s": round(fill_s, 1),
            "clean_wall_s": round(wall, 2),
            "clean_cpu_s": round(cpu, 2),
            "read_mib": round(result.bytes_read / MIB, 1),
            "written_mib": round(result.bytes_written / MIB, 1),
            "read_mib_per_s": round(result.bytes_read / MIB / wall, 1),
            "log_mib_per_s": round(size / MIB / wall, 1),
            "records_kept": result.records_kept,
            "records_removed": result.records_removed,
            "peak_rss_growth_mib": round((peak - rss_before) / 1024, 1),
            "peak_anon_growth_mib": round((anon_peak[0] - anon_before) / 1024, 1),
            "rss_before_mib": round(rss_before / 1024, 1),
            "load_avg": _load(),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _bench(address: str, records: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tailrace.broker.cli",
            "bench",
            "produce",
            "--bootstrap",
            address,
            "--records",
            str(records),
            "--record-size",
            "100",
            "--flush",
            "none",
            "--latency-every",
            "16",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fill(address: str, topic: str, keys: int) -> None:
    value = b"v" * 100
    with Producer(address) as producer:
        for _round in range(2):
            for i in range(keys):
                producer.send(topic, value, key=b"key-%09d" % i)
            producer.flush()


def produce(args: argparse.Namespace) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="bench-cleaner-broker-")
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")}
    env["TAILRACE_CLEANER_CHECK_INTERVAL_MS"] = "200"
    log_path = os.path.join(root, "broker.log")
    with open(log_path, "w") as log_file:
        broker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tailrace.broker.cli",
                "broker",
                "--data-dir",
                os.path.join(root, "data"),
                "--listen",
                address,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    rows: dict[str, list[dict[str, Any]]] = {"idle": [], "cleaning": []}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with Admin(address) as admin:
                    admin.create_topic(
                        "table",
                        1,
                        {
                            "cleanup_policy": "compact",
                            "flush": "none",
                            "segment_bytes": 8 * MIB,
                            "min_cleanable_dirty_ratio": "0.01",
                        },
                    )
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for _round in range(args.rounds):
            rows["idle"].append({**_bench(address, args.records), "load": _load()})
            _fill(address, "table", args.fill_keys)
            before = _cleanings(log_path)
            row = _bench(address, args.records)
            row["cleanings_during"] = _cleanings(log_path) - before
            row["load"] = _load()
            rows["cleaning"].append(row)
    finally:
        broker.terminate()
        broker.wait(60)
        shutil.rmtree(root, ignore_errors=True)

    def summary(kind: str) -> dict[str, Any]:
        return {
            "p50_ms": [r["latency_ms"]["p50"] for r in rows[kind]],
            "p99_ms": [r["latency_ms"]["p99"] for r in rows[kind]],
            "records_per_sec": [r["records_per_sec"] for r in rows[kind]],
            "load": [r["load"] for r in rows[kind]],
            **(
                {"cleanings_during": [r["cleanings_during"] for r in rows[kind]]}
                if kind == "cleaning"
                else {}
            ),
        }

    return {
        "records": args.records,
        "fill_keys": args.fill_keys,
        "idle": summary("idle"),
        "cleaning": summary("cleaning"),
    }


def _cleanings(log_path: str) -> int:
    with open(log_path) as f:
        return len(re.findall(r": cleaned \d+ segment", f.read()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--keys", type=int, default=1_000_000)
    t.add_argument("--value-bytes", type=int, default=100)
    p = sub.add_parser("produce")
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fill-keys", type=int, default=300_000)
    args = ap.parse_args()
    result = throughput(args) if args.what == "throughput" else produce(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
