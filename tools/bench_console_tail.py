"""Produce throughput with and without a browser following the live tail.

The console must not slow the broker. This measures it where it would
show: one broker subprocess on 127.0.0.1 with the console on
(``TAILRACE_CONSOLE_LISTEN=127.0.0.1:0``), a topic with one partition
(flush none: the broker is CPU-bound, not waiting for the disk), and
``tailrace bench produce`` against it for ``--duration`` seconds, in three
conditions:

* ``none``: nobody looks at the console;
* ``page``: headless Chromium (Debian's chromium with chromium-driver, as
  the tests use) has the partition's messages page open, tail off: what a
  browser alone costs a small machine;
* ``tail``: the same page with the live tail following, from before the
  timed run starts until it ends; the rows the page received are counted
  afterwards to show the tail was live.

Besides records/s (what producers get, which on a small machine is bound
by the producer process as much as by the broker), each run reports the
broker's own CPU seconds per million records stored and the CPU seconds of
the browser's processes (chromium-driver and everything under it).

The conditions are interleaved (none, page, tail, then tail, page, none,
...) so that the load of a busy machine falls on all alike; each run
records the 1-minute load average before it. The result is the median of
each condition and the ratios.

``--send-cost`` measures instead, in this process, what one send of a live
tail costs the broker's loop: the read through the fetch service, decoding
and rendering 20 records from the end of a partition of 512 KiB batches
(what the bench producer sends), best of 50.

Usage::

    python tools/bench_console_tail.py [--rounds 4] [--duration 10] [--json]
    python tools/bench_console_tail.py --send-cost

The figures go into docs/benchmarks.md ("Console: produce with a live tail").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.by import By

from tailrace.broker.faultkit.process import BrokerChild
from tailrace.client import Admin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "console"))
sys.path.insert(0, str(ROOT / "tests"))

from console_helpers import open_browser, wait_for  # noqa: E402

TOPIC = "tail"
_CONSOLE = re.compile(r"serving the console address=(\S+)")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def browser_cpu(driver: object | None) -> float:
    """CPU seconds of chromium-driver and every process under it."""
    if driver is None:
        return 0.0
    root = driver.service.process.pid  # type: ignore[attr-defined]
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0.0
    for pid in tree:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def bench(address: str, duration: float, record_size: int) -> dict:
    cmd = [
        sys.executable, "-m", "tailrace.broker.cli", "bench", "produce",
        "--bootstrap", address, "--topic", TOPIC, "--partitions", "1", "--flush", "none",
        "--duration", str(duration), "--record-size", str(record_size), "--json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_run(broker: BrokerChild, console: str, condition: str, args: argparse.Namespace) -> dict:
    driver = None
    try:
        if condition in ("page", "tail"):
            driver = open_browser()
            driver.get(f"{console}/topics/{TOPIC}/0?from=end&limit=5")
            if not driver.find_elements(By.ID, "tail-toggle"):
                raise RuntimeError(
                    "no messages page: " + driver.find_element(By.TAG_NAME, "main").text
                )
        if condition == "tail":
            driver.find_element(By.ID, "tail-toggle").click()
            wait_for(
                lambda: "following" in driver.find_element(By.ID, "tail-state").text,
                what="the live tail",
            )
        time.sleep(args.settle)  # a browser just started is busy on its own for a while
        load = os.getloadavg()[0]
        cpu_before = cpu_seconds(broker.pid)
        browser_before = browser_cpu(driver)
        result = bench(broker.address, args.duration, args.record_size)
        cpu = cpu_seconds(broker.pid) - cpu_before
        browser = browser_cpu(driver) - browser_before
        rows = None
        if condition == "tail":
            rows = len(driver.find_elements(By.CSS_SELECTOR, "#records tbody tr.new"))
            if rows == 0:
                raise RuntimeError("the live tail received nothing during the run")
    finally:
        if driver is not None:
            driver.quit()
    return {
        "condition": condition,
        "records_per_sec": round(result["records_per_sec"]),
        "mib_per_sec": result["mib_per_sec"],
        "produce_p99_ms": result["latency_ms"]["p99"],
        "broker_cpu_s": round(cpu, 2),
        "broker_cpu_s_per_million": round(cpu / (result["stored"] / 1e6), 3),
        "browser_cpu_s": round(browser, 2),
        "load_avg_1m_before": round(load, 2),
        "tail_rows_shown": rows,
    }


def send_cost() -> float:
    """Seconds one tail send takes on the loop (best of 50), in-process."""
    import trio

    from tailrace.broker.app import Broker
    from tailrace.broker.config import load_config
    from tailrace.broker.console.adapter import Core, session_info
    from tailrace.broker.console.web import TAIL_BATCH, TAIL_READ_BYTES, Console
    from tailrace.client.records import build_batch

    async def run(tmp: str) -> float:
        config = load_config(env={}, flags={"data_dir": tmp, "listen": "127.0.0.1:0"})
        broker = Broker(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.serve)
            await broker.manager.create_topic("t", 1, {"flush": "none"})
            plog = broker.manager.get("t", 0)
            now = int(time.time() * 1000)
            for _ in range(20):  # 512 KiB batches of 100-byte records
                plog.append(build_batch([(now, None, b"x" * 100, None)] * 4700))
            core = Core(broker)
            who = session_info("User:ANONYMOUS", "bench")
            best = float("inf")
            for _ in range(50):
                start = time.perf_counter()
                offset = plog.high_watermark - TAIL_BATCH
                records = await core.read(
                    who, "t", 0, offset, TAIL_BATCH, max_bytes=TAIL_READ_BYTES
                )
                json.dumps([Console._shown(r, "text") for r in records])
                best = min(best, time.perf_counter() - start)
            broker.shutdown()
        return best

    with tempfile.TemporaryDirectory(prefix="tailrace-console-send-") as tmp:
        return trio.run(run, tmp)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds of one run per condition")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--record-size", type=int, default=100)
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds between opening the page and the run"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--send-cost", action="store_true", help="see above")
    args = parser.parse_args()
    if args.send_cost:
        seconds = send_cost()
        print(f"one tail send (20 records from the end): {seconds * 1000:.2f} ms, best of 50")
        return 0

    runs = []
    with tempfile.TemporaryDirectory(prefix="tailrace-console-bench-") as tmp:
        broker = BrokerChild(
            Path(tmp) / "data", env={"TAILRACE_CONSOLE_LISTEN": "127.0.0.1:0"}
        ).start()
        try:
            console = next(
                "http://" + m.group(1)
                for line in list(broker.log_tail)
                if (m := _CONSOLE.search(line))
            )
            with Admin(broker.address) as admin:
                admin.create_topic(TOPIC, 1, {"flush": "none"})
            bench(broker.address, 1.0, args.record_size)  # warm-up
            order = []
            for i in range(args.rounds):
                three = ["none", "page", "tail"]
                order += three if i % 2 == 0 else three[::-1]
            for condition in order:
                run = one_run(broker, console, condition, args)
                runs.append(run)
                if not args.json:
                    print(json.dumps(run), flush=True)
                time.sleep(1)
        finally:
            broker.terminate()
    conditions = ("none", "page", "tail")
    medians = {
        c: statistics.median(r["records_per_sec"] for r in runs if r["condition"] == c)
        for c in conditions
    }
    cpu = {
        c: statistics.median(r["broker_cpu_s_per_million"] for r in runs if r["condition"] == c)
        for c in conditions
    }
    browser = {
        c: statistics.median(r["browser_cpu_s"] for r in runs if r["condition"] == c)
        for c in conditions
    }
    summary = {
        "runs": runs,
        "median_records_per_sec": medians,
        "median_broker_cpu_s_per_million": cpu,
        "median_browser_cpu_s": browser,
        "tail_vs_none": round(medians["tail"] / medians["none"], 4),
        "tail_vs_page": round(medians["tail"] / medians["page"], 4),
        "config": vars(args),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for c in conditions:
            print(
                f"{c}: median {medians[c]:.0f} records/s, broker {cpu[c]:.3f} CPU s per "
                f"million records, browser {browser[c]:.2f} CPU s per run"
            )
        print(
            f"tail/none = {summary['tail_vs_none']:.3f}, tail/page = {summary['tail_vs_page']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
