"""librdkafka's built-in mock Kafka cluster, as a process other programs can talk to.

A Kafka-compatible reference broker that runs on this machine (no Apache Kafka
here): the client-matrix scenarios (tests/kafka_clients/scenarios/) were first
proven against it, and a peer benchmark can use it. Run it with the Python of a
confluent-kafka virtualenv (``make clients`` builds them), which carries
librdkafka::

    .venv-clients/confluent-kafka-2.16/bin/python tools/kafka_mock_cluster.py --brokers 1

It prints ``bootstrap=HOST:PORT,...`` on stdout, then reads commands on stdin,
one a line, until end of input:

    topic NAME PARTITIONS    create a topic (the mock has no CreateTopics API)

Known deviations of the mock, measured here: no CreateTopics/DeleteTopics
(topics come from this command or auto-creation), no SASL users, and its
answer to an ApiVersions version it does not support is not in the v0 layout,
so kafka-python 3 cannot connect to it. It keeps only the last 5 MiB of each
partition (``mpart->max_size`` in rdkafka_mock.c, not configurable): older
message sets are dropped and the log start moves up, so a consumer reading
from the beginning of a bigger partition gets its last 5 MiB only
(tools/compare_peers.py reads what it holds).
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import sys


def _librdkafka() -> ctypes.CDLL:
    import confluent_kafka  # the wheel bundles librdkafka under confluent_kafka.libs

    site = os.path.dirname(os.path.dirname(confluent_kafka.__file__))
    found = glob.glob(os.path.join(site, "confluent_kafka.libs", "librdkafka*.so*"))
    if not found:
        raise SystemExit(f"no librdkafka in {site}/confluent_kafka.libs")
    lib = ctypes.CDLL(found[0])
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    return lib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", type=int, default=1, help="brokers in the mock cluster")
    args = parser.parse_args(argv)
    lib = _librdkafka()
    errstr = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    # the handle only hosts the cluster; it connects nowhere, so no warning about it
    lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, len(errstr))
    rk = lib.rd_kafka_new(0, conf, errstr, len(errstr))  # 0: a producer
    if not rk:
        raise SystemExit(f"rd_kafka_new: {errstr.value.decode()}")
    cluster = lib.rd_kafka_mock_cluster_new(rk, args.brokers)
    if not cluster:
        raise SystemExit("rd_kafka_mock_cluster_new failed")
    print("bootstrap=" + lib.rd_kafka_mock_cluster_bootstraps(cluster).decode(), flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if len(words) == 3 and words[0] == "topic":
                err = lib.rd_kafka_mock_topic_create(cluster, words[1].encode(), int(words[2]), 1)
                print(f"topic {words[1]} error={err}", flush=True)
            elif words:
                print(f"unknown command: {line.strip()}", file=sys.stderr, flush=True)
    finally:
        lib.rd_kafka_mock_cluster_destroy(cluster)
        lib.rd_kafka_destroy(rk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
