"""Run the reliability scenarios' long profiles and print a results table.

    .venv/bin/python tools/reliability.py                 # every scenario, long, + soak
    .venv/bin/python tools/reliability.py powercut lossy  # some of them
    .venv/bin/python tools/reliability.py soak --soak-minutes 10 --kill-every 120
    .venv/bin/python tools/reliability.py --profile short  # what make test runs

Each scenario is a pytest module in tests/reliability/ (its short profile
runs in ``make test``). This tool runs it with RELIABILITY_PROFILE=long and
RELIABILITY_RESULTS pointing at a file the tests append one JSON line of
figures to (runs, faults injected, records checked, lost, ...), then prints
them as a table (``--markdown`` for docs/reliability.md) and writes them all
to ``--results`` (JSON lines, with the machine and the command). A failing
scenario is marked FAILED and the tool exits 1; its pytest output is kept
in the results directory.

Two scenarios live only here. diskfull-real gives the broker a real 32 MiB
tmpfs (``unshare -rm``: a user and mount namespace, no privileges needed
where user namespaces are allowed) and fills it: no SIGBUS, STORAGE_FULL,
reads work, writes resume when a topic is deleted. The soak: the maximum
rate of four oracle producers is measured first (flush sync, 200-byte
records, a broker process), then they run at half of it for
``--soak-minutes`` while the broker is killed with SIGKILL every
``--kill-every`` seconds and restarted on the same port. Per window between
kills: records acknowledged, p50/p99 acknowledgement latency (also without
the first 5 s after the restart), broker RSS and descriptors. At the end the
broker stops cleanly and the oracle reads everything from disk and through a
consumer.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from tailrace.broker.faultkit.oracle import History, check, read_topic_dir
from tailrace.broker.faultkit.process import BrokerChild, proc_status
from tailrace.broker.faultkit.workload import ProducerStats, read_topic, run_producer
from tailrace.client import AsyncAdmin
from tailrace.client.errors import ErrorCode
from tailrace.client.protocol import ProducePartition, ProduceRequest, ProduceTopic
from tailrace.client.records import build_batch
from tailrace.client.transport import BrokerConnection

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {
    "kill9": "test_rel_kill9.py",
    "powercut": "test_rel_powercut.py",
    "crashpoints": "test_rel_crashpoints.py",
    "cleaner": "test_rel_cleaner.py",
    "storage": "test_rel_storage_faults.py",
    "corruption": "test_rel_corruption.py",
    "lossy": "test_rel_lossy.py",
    "hostile": "test_rel_hostile.py",
    "hostile-kafka": "test_rel_hostile_kafka.py",
    "cluster": "test_rel_cluster.py",
}


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) // 1024 // 1024} GiB RAM"
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{platform.node()} {platform.machine()}, {cpus} CPUs, {mem}, load {load:.2f} at start"


def run_scenario(name: str, profile: str, results: Path, logs: Path) -> tuple[bool, float]:
    env = dict(os.environ, RELIABILITY_PROFILE=profile, RELIABILITY_RESULTS=str(results))
    started = time.monotonic()
    log = logs / f"{name}.log"
    with open(log, "w") as out:
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"tests/reliability/{SCENARIOS[name]}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return code == 0, time.monotonic() - started


# --- the soak ---------------------------------------------------------------------


async def _producers(address, topic, history, stop, rate, stats, prefix):
    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(
                lambda i=i: run_producer(
                    address, topic, history, f"{prefix}{i}", partitions=4, stop=stop,
                    rate=rate / 4 if rate else None, pad=200, stats=stats[i],
                    config={"delivery_timeout_ms": 120_000, "request_timeout_ms": 5000},
                    close_timeout=60,
                )
            )  # fmt: skip


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _started(broker: BrokerChild, scenario, *args) -> dict:
    """Start ``broker`` and run ``scenario(broker, *args)``; a scenario that
    fails or is interrupted leaves no broker behind (SIGKILL, reaped)."""
    await trio.to_thread.run_sync(broker.start)
    try:
        return await scenario(broker, *args)
    except BaseException:
        broker.kill()
        raise


async def soak(minutes: float, kill_every: float, data: Path) -> dict:
    return await _started(BrokerChild(data), _soak, minutes, kill_every, data)


async def _soak(broker: BrokerChild, minutes: float, kill_every: float, data: Path) -> dict:
    address = broker.address
    async with AsyncAdmin(address) as admin:
        for topic in ("soak", "soak-probe"):
            await admin.create_topic(topic, partitions=4, config={"segment_bytes": str(32 << 20)})
    # 1. the maximum rate of this setup
    probe = History()
    stats = [ProducerStats() for _ in range(4)]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_producers, address, "soak-probe", probe, stop, None, stats, "max")
        await trio.sleep(5)
        first = sum(s.acked for s in stats)
        await trio.sleep(15)
        maximum = (sum(s.acked for s in stats) - first) / 15
        stop.set()
    rate = maximum / 2
    print(f"soak: maximum {maximum:,.0f} records/s, running at {rate:,.0f}/s for {minutes} min")
    # 2. half of it, with a kill -9 every kill_every seconds
    history = History()
    stats = [ProducerStats() for _ in range(4)]
    stop = trio.Event()
    windows: list[dict] = []
    kills = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_producers, address, "soak", history, stop, rate, stats, "soak")
        t0 = time.monotonic()
        end = t0 + minutes * 60
        window_start = t0
        samples: list[dict] = []
        while time.monotonic() < end:
            await trio.sleep(1)
            # This process keeps every attempt and latency (~12 M objects in
            # 10 minutes); a full collection walks them all and pauses the
            # producers, which showed up as later windows' p99. What is
            # already kept is never garbage: take it out of the collector.
            gc.freeze()
            samples.append(proc_status(broker.pid))
            now = time.monotonic()
            if now - window_start >= kill_every or now >= end:
                windows.append(_window(t0, window_start, now, stats, samples))
                samples = []
                window_start = now
                if now < end:
                    broker.kill()
                    kills += 1
                    await trio.to_thread.run_sync(broker.start)
        stop.set()
    history.finish()
    reads = await read_topic(address, "soak", timeout=300)
    code = await trio.to_thread.run_sync(broker.terminate)
    disk = check(history, read_topic_dir(str(data), "soak"))
    consumer = check(history, reads)
    return {
        "scenario": "soak",
        "minutes": minutes,
        "kill_every_s": kill_every,
        "kills": kills,
        "max_rate": round(maximum),
        "rate": round(rate),
        "acked": disk.acked,
        "unknown": disk.unknown,
        "records_checked": disk.records_read,
        "lost": disk.lost + consumer.lost,
        "oracle_disk_ok": disk.ok,
        "oracle_consumer_ok": consumer.ok,
        "oracle": str(disk) if not disk.ok else "",
        "clean_exit": code == 0,
        "windows": windows,
    }


def _window(t0: float, start: float, end: float, stats, samples) -> dict:
    """Figures of one window between kills (times are time.monotonic, the
    History clock the latencies were recorded with)."""
    pairs = sorted((t, lat) for s in stats for (t, lat) in s.latencies if start <= t < end)
    lat = [lat for _t, lat in pairs]
    # without the restart at its start: acknowledgements 5 s after it on
    steady = [lat for t, lat in pairs if start + 5 <= t]
    # the second half of the window, long after the restart's backlog
    second_half = [lat for t, lat in pairs if t >= (start + end) / 2]
    rss = [s["VmRSS"] for s in samples] or [0]
    fds = [s["fds"] for s in samples] or [0]
    return {
        "from_s": round(start - t0),
        "to_s": round(end - t0),
        "acked": len(lat),
        "p50_ms": round((_pct(lat, 0.5) or 0) * 1000, 1),
        "p99_ms": round((_pct(lat, 0.99) or 0) * 1000, 1),
        "p99_steady_ms": round((_pct(steady, 0.99) or 0) * 1000, 1),
        "p99_second_half_ms": round((_pct(second_half, 0.99) or 0) * 1000, 1),
        "rss_mib_end": round(rss[-1] / 1024, 1),
        "rss_mib_max": round(max(rss) / 1024, 1),
        "fds_end": fds[-1],
        "fds_max": max(fds),
    }


# --- a real full disk -------------------------------------------------------------


async def diskfull_real(work: Path) -> dict:
    """The broker on a 32 MiB tmpfs of its own (a user and mount namespace:
    ``unshare -rm``, no privileges needed where user namespaces are allowed).
    Oracle producers write to t while a filler topic takes the rest of the
    space; once the disk is full: no SIGBUS (the broker lives), producers are
    refused (STORAGE_FULL, retried), t reads; deleting the filler frees the
    space and the producers' retries land; the oracle reads t back."""
    data = work / "tmpfs"
    data.mkdir()
    mount = f'mount -t tmpfs -o size=32m none {data} && exec "$@"'
    broker = BrokerChild(data / "data", wrap=["unshare", "-rm", "sh", "-c", mount, "sh"])
    return await _started(broker, _diskfull_real)


async def _diskfull_real(broker: BrokerChild) -> dict:
    address = broker.address
    async with AsyncAdmin(address) as admin:
        for topic in ("t", "filler"):
            partitions = 4 if topic == "t" else 1  # the oracle producers write 4
            await admin.create_topic(
                topic, partitions=partitions, config={"segment_bytes": str(4 << 20)}
            )
    history = History()
    stats = [ProducerStats() for _ in range(4)]
    stop = trio.Event()
    full_errors = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_producers, address, "t", history, stop, 2000, stats, "real")
        # fill the disk, answer by answer, until the broker says it is full
        conn = await BrokerConnection.connect(nursery, address)
        # big batches first, then small ones for what is left between them
        for size in (50_000, 2_000):
            blob = build_batch([(0, None, b"f" * size, None)] * 4)
            while True:
                response = await conn.request(
                    ProduceRequest(
                        acks=1,
                        timeout_ms=10_000,
                        topics=[
                            ProduceTopic(
                                name="filler",
                                partitions=[ProducePartition(partition=0, records=blob)],
                            )
                        ],
                    )
                )
                code = response.topics[0].partitions[0].error_code
                if code == ErrorCode.STORAGE_FULL:
                    full_errors += 1
                    break
                if code:
                    raise RuntimeError(f"filler produce failed with error code {code}")
        await conn.aclose()  # its reader runs in this nursery
        # t's partitions go on in the space they reserved before; wait until
        # that is used and the producers' batches are refused (no
        # acknowledgement for 3 s)
        quiet_since = trio.current_time()
        last = sum(s.acked for s in stats)
        with trio.move_on_after(120):
            while trio.current_time() - quiet_since < 3:
                await trio.sleep(0.25)
                now = sum(s.acked for s in stats)
                if now != last:
                    last, quiet_since = now, trio.current_time()
        stalled = trio.current_time() - quiet_since >= 3
        alive_when_full = broker.proc is not None and broker.proc.poll() is None
        partial = await read_topic(address, "t", timeout=60)  # reads work while full
        async with AsyncAdmin(address) as admin:
            await admin.delete_topic("filler")
        resumed_from = sum(s.acked for s in stats)
        await history.until(lambda: sum(s.acked for s in stats) >= resumed_from + 4000, timeout=120)
        stop.set()
    history.finish()
    reads = await read_topic(address, "t", timeout=120)
    code = await trio.to_thread.run_sync(broker.terminate)
    report = check(history, reads)
    return {
        "scenario": "disk full on a real 32 MiB tmpfs",
        "runs": 1,
        "faults": full_errors,
        "records_checked": report.records_read,
        "lost": report.lost,
        "acked": report.acked,
        "alive_when_full": alive_when_full,
        "refused_when_full": stalled,
        "read_while_full": sum(len(r.records) for r in partial),
        "oracle_ok": report.ok,
        "oracle": "" if report.ok else str(report),
        "exit_code": code,
    }


# --- output -----------------------------------------------------------------------

COLUMNS = ("runs", "faults", "records_checked", "lost")


def table(rows: list[dict], markdown: bool) -> str:
    head = ["scenario", *COLUMNS, "other figures", "s"]
    lines = []
    for r in rows:
        extra = {
            k: v for k, v in r.items()
            if k not in (*COLUMNS, "scenario", "profile", "finished", "seconds_total", "status")
        }  # fmt: skip
        lines.append(
            [r.get("status", "") + r["scenario"], *(str(r.get(c, "")) for c in COLUMNS),
             ", ".join(f"{k}={v}" for k, v in extra.items()), str(r.get("seconds_total", ""))]
        )  # fmt: skip
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h)
              for i, h in enumerate(head)]  # fmt: skip
    widths[-2] = min(widths[-2], 90)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*c) for c in lines)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "scenarios", nargs="*", help=f"some of {', '.join([*SCENARIOS, 'diskfull-real', 'soak'])}"
    )
    p.add_argument("--profile", choices=["short", "long"], default="long")
    p.add_argument("--soak-minutes", type=float, default=10.0)
    p.add_argument("--kill-every", type=float, default=120.0, help="seconds between kills")
    p.add_argument("--results", default="reliability-results.jsonl")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    names = args.scenarios or [*SCENARIOS, "diskfull-real", "soak"]
    unknown = [n for n in names if n not in SCENARIOS and n not in ("soak", "diskfull-real")]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{stamp}; {machine()}; profile {args.profile}")
    work = Path(tempfile.mkdtemp(prefix="tailrace-reliability-"))
    rows: list[dict] = []
    failed = []
    for name in names:
        if name == "diskfull-real":
            started = time.monotonic()
            if shutil.which("unshare") is None:
                print("diskfull-real: no unshare(1) here; not run")
                continue
            row = trio.run(diskfull_real, work)
            row["seconds_total"] = round(time.monotonic() - started)
            ok = (
                row["oracle_ok"]
                and row["alive_when_full"]
                and row["refused_when_full"]
                and row["exit_code"] == 0
            )
        elif name == "soak":
            started = time.monotonic()
            data = work / "soak-data"
            row = trio.run(soak, args.soak_minutes, args.kill_every, data)
            row["seconds_total"] = round(time.monotonic() - started)
            ok = row["oracle_disk_ok"] and row["oracle_consumer_ok"] and row["lost"] == 0
            for w in row["windows"]:
                print(f"  soak window {w}")
            row = {k: v for k, v in row.items() if k != "windows"} | {
                "rss_mib": [w["rss_mib_end"] for w in row["windows"]],
                "fds": [w["fds_end"] for w in row["windows"]],
                "p99_ms": [w["p99_ms"] for w in row["windows"]],
                "p99_steady_ms": [w["p99_steady_ms"] for w in row["windows"]],
                "p99_second_half_ms": [w["p99_second_half_ms"] for w in row["windows"]],
                "runs": 1,
                "faults": row["kills"],
            }
            shutil.rmtree(data, ignore_errors=True)
        else:
            results = work / f"{name}.jsonl"
            ok, seconds = run_scenario(name, args.profile, results, work)
            found = [json.loads(line) for line in results.read_text().splitlines()] if (
                results.exists()) else []  # fmt: skip
            for r in found:
                r["seconds_total"] = round(seconds)
            row_list = found or [{"scenario": name, "seconds_total": round(seconds)}]
            if not ok:
                failed.append(name)
                for r in row_list:
                    r["status"] = "FAILED "
            rows += row_list
            print("\n".join(table(row_list, False).splitlines()[1:]), flush=True)
            continue
        if not ok:
            failed.append(name)
            row["status"] = "FAILED "
        rows.append(row)
    print()
    print(table(rows, args.markdown))
    with open(args.results, "a") as f:
        for r in rows:
            f.write(json.dumps({"date": stamp, "machine": machine(),
                                "command": " ".join(sys.argv), **r}) + "\n")  # fmt: skip
    if failed:
        print(f"\nFAILED: {', '.join(failed)} (pytest output in {work})")
        return 1
    print(f"\nall passed; figures appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
