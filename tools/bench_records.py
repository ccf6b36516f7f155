"""Record formats in one process: down-conversion cost per MiB, and the
per-record cost of building, validating and decoding either format.

No broker, no sockets: each operation is timed over in-memory batches shaped
as the native producer sends them (``--batch-bytes`` of records per batch,
one 16 B key, one header), in CPU time of this process
(``time.process_time``), so other processes on a busy machine slow the
figures less than wall time would. Every operation runs ``--repeat`` times,
the two formats alternately, and the median and the best are printed.

Operations, per record size (100 B and 1 KiB values by default):

* ``down_convert``: a run of native batches (about 1 MiB) to Kafka v2
  batches (records.down_convert): CPU ms per MiB of stored bytes, and
  per record;
* ``build``: the producer's encode of one batch (ProducerBatch.encode:
  msgpack for magic 1, aiokafka's Cython builder for magic 2);
* ``validate``: the broker's check on append (records.validate_batch);
* ``decode``: the consumer's decode (client.consumer.record.decode_batches),
  check and decode, columns ready.

Usage::

    python tools/bench_records.py [--repeat 15] [--mib 4] [--json]

The figures go into docs/format.md ("Measurements").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from tailrace.client.consumer.record import decode_batches
from tailrace.client.producer.batch import ProducerBatch
from tailrace.client.records import (
    CODEC_NONE,
    down_convert,
    iter_headers,
    load_codec,
    patch_base_offset,
    validate_batch,
)

MIB = 1024 * 1024


def _producer_batch(size: int, per_batch: int, base: int) -> ProducerBatch:
    """A batch as the producer holds it: (timestamp delta, key, value, headers)."""
    b = ProducerBatch("t", 0, 1_700_000_000_000)
    value = bytes(range(256)) * (size // 256 + 1)
    for i in range(per_batch):
        b.records.append((i // 10, b"key-%012d" % (base + i), value[:size], [("trace", b"abcd")]))
    b.max_timestamp = b.base_timestamp + (per_batch - 1) // 10
    return b


def _batch(magic: int, size: int, per_batch: int, base: int) -> bytes:
    out = bytearray(_producer_batch(size, per_batch, base).encode(CODEC_NONE, 6, magic))
    patch_base_offset(out, 0, base, 0)
    return bytes(out)


def _run(magic: int, size: int, batch_bytes: int, total_bytes: int) -> bytes:
    per_batch = max(1, batch_bytes // (size + 30))
    parts = []
    base = 0
    n = 0
    while n < total_bytes:
        part = _batch(magic, size, per_batch, base)
        parts.append(part)
        base += per_batch
        n += len(part)
    return b"".join(parts)


def _cpu(fn: Callable[[], Any]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "best": min(xs)}


def measure(size: int, *, repeat: int, mib: float, batch_bytes: int) -> dict[str, Any]:
    runs = {m: _run(m, size, batch_bytes, int(mib * MIB)) for m in (1, 2)}
    counts = {m: sum(h.record_count for _p, h in iter_headers(runs[m])) for m in (1, 2)}
    per_batch = next(iter_headers(runs[1]))[1].record_count
    times: dict[str, list[float]] = {}

    def validate_all(m: int) -> None:
        buf = runs[m]
        for pos, _h in iter_headers(buf):
            validate_batch(buf, pos, max_batch_bytes=1 << 30)

    def decode_all(m: int) -> None:
        view = memoryview(runs[m])
        pos, offset = 0, 0
        while pos < len(view):
            out: list[tuple] = []
            used, offset, _n = decode_batches("t", 0, view[pos:], offset, out, 1 << 30)
            pos += used

    held = _producer_batch(size, per_batch, 0)

    def build_one(m: int) -> None:
        for _ in range(20):
            held.encoded = None
            held.encode(CODEC_NONE, 6, m)

    for _ in range(repeat):
        for m in (1, 2):  # alternate: the two formats see the same machine
            times.setdefault(f"validate/{m}", []).append(_cpu(lambda m=m: validate_all(m)))
            times.setdefault(f"decode/{m}", []).append(_cpu(lambda m=m: decode_all(m)))
            times.setdefault(f"build/{m}", []).append(_cpu(lambda m=m: build_one(m)))
        times.setdefault("down_convert", []).append(_cpu(lambda: down_convert(runs[1])))
    out: dict[str, Any] = {
        "record_size": size,
        "records_per_batch": per_batch,
        "stored_mib": {m: round(len(runs[m]) / MIB, 3) for m in (1, 2)},
        "records": counts[1],
    }
    for key, xs in times.items():
        op, _, m = key.partition("/")
        n = counts[int(m)] if m else counts[1]
        if op == "build":
            n = 20 * per_batch
        s = _stats(xs)
        out[key] = {
            "us_per_record": {k: round(v / n * 1e6, 3) for k, v in s.items()},
        }
        if op == "down_convert":
            out[key]["ms_per_mib"] = {
                k: round(v * 1e3 / (len(runs[1]) / MIB), 2) for k, v in s.items()
            }
            out[key]["mib_per_cpu_s"] = {
                k: round((len(runs[1]) / MIB) / v, 1) for k, v in s.items()
            }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,1024", help="value sizes in bytes (comma-separated)")
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--mib", type=float, default=4, help="stored MiB per run")
    p.add_argument("--batch-bytes", type=int, default=512 * 1024, help="producer batch size")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    t = time.perf_counter()
    load_codec()
    import_s = time.perf_counter() - t
    results = [
        measure(int(s), repeat=args.repeat, mib=args.mib, batch_bytes=args.batch_bytes)
        for s in args.sizes.split(",")
    ]
    meta = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "codec_import_s": round(import_s, 3),
        "repeat": args.repeat,
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=1))
        return 0
    print(
        f"python {meta['python']}, {meta['cpus']} CPUs, load {meta['load_avg_1m']}, "
        f"codec import {import_s * 1e3:.0f} ms; CPU time, median (best) of {args.repeat}"
    )
    for r in results:
        print(
            f"\n{r['record_size']} B values, {r['records_per_batch']} records/batch, "
            f"{r['stored_mib'][1]} MiB native / {r['stored_mib'][2]} MiB kafka"
        )
        dc = r["down_convert"]
        print(
            f"  down_convert  {dc['ms_per_mib']['median']:7.2f} ms/MiB "
            f"({dc['ms_per_mib']['best']:.2f})  {dc['mib_per_cpu_s']['median']:.0f} MiB/CPU-s  "
            f"{dc['us_per_record']['median']:.3f} us/record"
        )
        for op in ("build", "validate", "decode"):
            a, b = r[f"{op}/1"]["us_per_record"], r[f"{op}/2"]["us_per_record"]
            print(
                f"  {op:9s} us/record  native {a['median']:.3f} ({a['best']:.3f})"
                f"  kafka {b['median']:.3f} ({b['best']:.3f})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
