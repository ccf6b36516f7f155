"""How a compacted batch should keep its offsets: the consumer's decode cost
and the cleaner's rewrite cost of each option (issue 17), in one process.

The options, for a native (magic 1) batch that loses records to compaction:

* ``whole``: the cleaner drops only whole batches; a batch with one live
  record stays as it is. The consumer decodes every stored record (and
  throws the superseded ones away), so its cost is counted per *live*
  record delivered.
* ``kafka``: the cleaner rewrites the batch as a Kafka magic-2 batch holding
  only the live records, each with its own offset delta
  (records.kafka.build_compacted); the consumer decodes it with
  kafka.sparse_columns (decode_batches' compacted path).
* ``native3``: a hypothetical new native magic whose msgpack records carry an
  offset delta ([offset_delta, timestamp_delta, key, value, headers]); the
  decode is one CRC, one msgpack call and one transposition (what a
  native3.columns would be), the rewrite one msgpack call.

Records are 16 B keys, ``--value-bytes`` values and one header, 500 per
batch (about 60 KiB), ``--keep`` of them live (spread through the batch).
CPU time of this process (time.process_time), median of ``--repeat`` runs,
the options interleaved. Usage::

    python tools/bench_compaction_formats.py [--repeat 5] [--keep 0.5] [--batches 200]

The figures go into docs/format.md ("Compacted batches").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import zlib
from collections.abc import Callable
from typing import Any

import crc32c
import msgpack

from tailrace.client.consumer.record import decode_batches
from tailrace.client.records import (
    HEADER_SIZE,
    build_batch,
    iter_records,
    load_codec,
    patch_base_offset,
    read_header,
)
from tailrace.client.records.kafka import build_compacted

PER_BATCH = 500


def _native_batches(n: int, value_bytes: int, gzip: bool) -> list[bytes]:
    value = bytes(range(256)) * (value_bytes // 256 + 1)
    out = []
    for b in range(n):
        recs = [
            (
                1_700_000_000_000 + i,
                b"key-%012d" % (b * PER_BATCH + i),
                value[:value_bytes],
                [("trace", b"abcd")],
            )
            for i in range(PER_BATCH)
        ]
        raw = bytearray(build_batch(recs, compression=1 if gzip else 0))
        patch_base_offset(raw, 0, b * PER_BATCH)
        out.append(bytes(raw))
    return out


def _live(keep: float) -> Callable[[int], bool]:
    step = max(1, round(1 / keep)) if keep > 0 else 0
    return lambda off: step > 0 and off % step == 0


def _rewrite_kafka(batches: list[bytes], live: Callable[[int], bool]) -> list[bytes]:
    out = []
    for raw in batches:
        h = read_header(raw)
        kept = [r for r in iter_records(raw, h) if live(r[0])]
        out.append(build_compacted(h, kept, h.compression))
    return out


def _rewrite_native3(batches: list[bytes], live: Callable[[int], bool]) -> list[bytes]:
    out = []
    for raw in batches:
        h = read_header(raw)
        recs = [
            (off - h.base_offset, ts - h.base_timestamp, k, v, hd)
            for off, ts, k, v, hd in iter_records(raw, h)
            if live(off)
        ]
        body = msgpack.packb(recs, use_bin_type=True)
        if h.compression:
            c = zlib.compressobj(6, zlib.DEFLATED, 31)
            body = c.compress(body) + c.flush()
        out.append(raw[:HEADER_SIZE] + body)  # header fields unchecked here
    return out


def _decode_native3(batches: list[bytes]) -> int:
    n = 0
    for raw in batches:
        h = read_header(raw)
        crc32c.crc32c(memoryview(raw)[21:])
        body: Any = memoryview(raw)[HEADER_SIZE:]
        if h.compression:
            body = zlib.decompress(body, 31)
        recs = msgpack.unpackb(body, use_list=False)
        if recs:
            offs, *_columns = zip(*recs, strict=True)
            n += len(offs)
    return n


def _decode(batches: list[bytes]) -> int:
    # one batch per call, its columns dropped after: a consumer polling
    # about a batch of records at a time
    n = 0
    for raw in batches:
        out: list[tuple] = []
        n += decode_batches("t", 0, memoryview(raw), read_header(raw).base_offset, out, 1 << 40)[2]
    return n


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.process_time()
    r = fn()
    return time.process_time() - t, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_codec()
    live = _live(args.keep)
    native = _native_batches(args.batches, args.value_bytes, args.gzip)
    live_records = sum(1 for b in range(args.batches * PER_BATCH) if live(b))
    kafka = _rewrite_kafka(native, live)
    native3 = _rewrite_native3(native, live)
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "decode_whole",
            "decode_kafka",
            "decode_native3",
            "rewrite_kafka",
            "rewrite_native3",
        )
    }
    for _ in range(args.repeat):
        t, _n = _cpu(lambda: _decode(native))
        results["decode_whole"].append(t / live_records)
        t, n = _cpu(lambda: _decode(kafka))
        assert n == live_records, (n, live_records)
        results["decode_kafka"].append(t / live_records)
        t, n = _cpu(lambda: _decode_native3(native3))
        assert n == live_records
        results["decode_native3"].append(t / live_records)
        t, _ = _cpu(lambda: _rewrite_kafka(native, live))
        results["rewrite_kafka"].append(t / (args.batches * PER_BATCH))
        t, _ = _cpu(lambda: _rewrite_native3(native, live))
        results["rewrite_native3"].append(t / (args.batches * PER_BATCH))
    summary = {
        k: {"median_us": round(statistics.median(v) * 1e6, 3), "best_us": round(min(v) * 1e6, 3)}
        for k, v in results.items()
    }
    sizes = {
        "whole_bytes": sum(map(len, native)),
        "kafka_bytes": sum(map(len, kafka)),
        "native3_bytes": sum(map(len, native3)),
    }
    if args.json:
        print(json.dumps({"args": vars(args), "per_record": summary, **sizes}, indent=1))
        return
    print(
        f"{args.batches} batches x {PER_BATCH} records, {args.value_bytes} B values, "
        f"{'gzip' if args.gzip else 'uncompressed'}, {live_records} live ({args.keep:.0%})"
    )
    for k, v in summary.items():
        unit = "per live record" if k.startswith("decode") else "per stored record"
        print(f"  {k:16s} median {v['median_us']:.3f} us  best {v['best_us']:.3f} us  {unit}")
    for k, v in sizes.items():
        print(f"  {k:16s} {v / 1024 / 1024:.2f} MiB")


if __name__ == "__main__":
    main()
