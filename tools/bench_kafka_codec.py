"""Kafka message codecs side by side: kio 0.6.5 (the broker's) versus
kafka-python 3's ``kafka.protocol``, on the messages the broker handles most.

* decode a ProduceRequest v8 frame (header + body; one partition, one
  13 KB batch of 100 records), as the broker's codec does it
  (KafkaServerConnection: framing, header, kio reader) and as kafka-python
  does it (``ProduceRequest.decode(..., header=True)``);
* encode a FetchResponse v11 (one partition, the same 13 KB of records):
  the broker's ``encode_response`` (kio writer) versus kafka-python's
  ``encode(header=True)``;
* encode a MetadataResponse v8 (one broker, 10 topics x 3 partitions).

Each figure is the best of ``--repeat`` rounds of ``--number`` calls, in
microseconds per call, single thread.

Usage::

    python tools/bench_kafka_codec.py [--number 2000] [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import timeit

import kafka
import kio
from kafka.protocol.consumer import FetchResponse
from kafka.protocol.metadata import MetadataResponse
from kafka.protocol.producer import ProduceRequest

from tailrace.broker.kafka.codec import (
    KafkaServerConnection,
    encode_response,
    response_class,
)
from tailrace.broker.kafka.entities import ZERO, make
from tailrace.broker.kafka.errors import kafka_error
from tailrace.client.protocol import Limits

RECORDS = os.urandom(13_000)


def produce_frame() -> bytes:
    P = ProduceRequest.TopicProduceData
    req = ProduceRequest(
        version=8,
        transactional_id=None,
        acks=-1,
        timeout_ms=30_000,
        topic_data=[
            P(name="events", partition_data=[P.PartitionProduceData(index=0, records=RECORDS)])
        ],
    )
    req.with_header(correlation_id=1, client_id="bench")
    return bytes(req.encode(version=8, header=True, framed=True))


def fetch_values() -> dict:
    return {
        "throttle_time": ZERO,
        "error_code": kafka_error(None),
        "session_id": 0,
        "responses": [
            {
                "topic": "events",
                "partitions": [
                    {
                        "partition_index": 0,
                        "error_code": kafka_error(None),
                        "high_watermark": 1000,
                        "last_stable_offset": 1000,
                        "log_start_offset": 0,
                        "aborted_transactions": (),
                        "preferred_read_replica": -1,
                        "records": RECORDS,
                    }
                ],
            }
        ],
    }


def metadata_values() -> dict:
    return {
        "throttle_time": ZERO,
        "brokers": [{"node_id": 0, "host": "127.0.0.1", "port": 9092, "rack": None}],
        "cluster_id": "c" * 32,
        "controller_id": 0,
        "topics": [
            {
                "error_code": kafka_error(None),
                "name": f"topic-{t}",
                "is_internal": False,
                "partitions": [
                    {
                        "error_code": kafka_error(None),
                        "partition_index": p,
                        "leader_id": 0,
                        "leader_epoch": -1,
                        "replica_nodes": (0,),
                        "isr_nodes": (0,),
                        "offline_replicas": (),
                    }
                    for p in range(3)
                ],
                "topic_authorized_operations": -(2**31),
            }
            for t in range(10)
        ],
        "cluster_authorized_operations": -(2**31),
    }


def best_us(fn, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--number", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n, r = args.number, args.repeat
    rows = []

    data = produce_frame()
    limits = Limits()

    def kio_decode():
        conn = KafkaServerConnection(limits)
        conn.receive_data(data)
        return conn.next_event()

    event = kio_decode()
    assert event.body.topic_data[0].partition_data[0].records == RECORDS
    rows.append(
        (
            "decode ProduceRequest v8 (13 KB batch)",
            best_us(kio_decode, n, r),
            best_us(lambda: ProduceRequest.decode(data[4:], version=8, header=True), n, r),
        )
    )

    fetch_event = type(event)(1, 11, 7, "bench", None)
    fetch_entity = make(response_class(1, 11), fetch_values())
    kp_fetch = FetchResponse.decode(
        encode_response(fetch_event, fetch_entity)[4:], version=11, header=True
    )
    kp_fetch.with_header(correlation_id=7)
    assert bytes(kp_fetch.encode(header=True)) == encode_response(fetch_event, fetch_entity)[4:]
    rows.append(
        (
            "encode FetchResponse v11 (13 KB records)",
            best_us(lambda: encode_response(fetch_event, fetch_entity), n, r),
            best_us(lambda: kp_fetch.encode(header=True), n, r),
        )
    )

    meta_event = type(event)(3, 8, 7, "bench", None)
    meta_entity = make(response_class(3, 8), metadata_values())
    kp_meta = MetadataResponse.decode(
        encode_response(meta_event, meta_entity)[4:], version=8, header=True
    )
    kp_meta.with_header(correlation_id=7)
    assert bytes(kp_meta.encode(header=True)) == encode_response(meta_event, meta_entity)[4:]
    rows.append(
        (
            "encode MetadataResponse v8 (10 topics x 3)",
            best_us(lambda: encode_response(meta_event, meta_entity), n, r),
            best_us(lambda: kp_meta.encode(header=True), n, r),
        )
    )

    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "kio": kio.__version__ if hasattr(kio, "__version__") else "0.6.5",
        "kafka-python": kafka.__version__,
        "number": n,
        "repeat": r,
    }
    if args.json:
        print(
            json.dumps(
                {
                    "info": info,
                    "rows": [
                        dict(zip(("op", "kio_us", "kafka_python_us"), row, strict=True))
                        for row in rows
                    ],
                }
            )
        )
        return 0
    print(f"# {info}")
    print("| operation | kio (the broker's codec) | kafka-python 3 | ratio |")
    print("|---|---|---|---|")
    for op, a, b in rows:
        print(f"| {op} | {a:.1f} µs | {b:.1f} µs | {b / a:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
