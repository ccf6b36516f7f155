"""The Kafka front-end's request trace (broker/kafka/trace.py): at DEBUG,
one line per request and one per answer, on a real broker; at INFO nothing."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import MetadataRequest
from kafka_samples import RawKafkaClient, request
from test_kafka_listener import create, produce

from tailrace.broker.kafka import trace
from tailrace.broker.kafka.versions import KafkaApi
from tailrace.client.records import build_batch

TRACE = "tailrace.broker.kafka.trace"


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict]]:
    return [(r.getMessage(), r.fields) for r in caplog.records if r.name == TRACE]


def test_every_request_and_answer_is_one_line_at_debug(kafka_broker, caplog):
    caplog.set_level(logging.DEBUG, logger=TRACE)
    fetch = FetchRequest.FetchTopic
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "traced", partitions=1)
        produce(c, "traced", 0, build_batch([(1_700_000_000_000, None, b"v", None)]))
        topics = [
            fetch(
                topic="traced",
                partitions=[
                    fetch.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
                ],
            )
        ]
        c.call(request(1, 11, max_wait_ms=10, min_bytes=1, max_bytes=1 << 20, topics=topics), 11)
        c.call(request(3, 8, topics=[MetadataRequest.MetadataRequestTopic(name="traced")]), 8)
    got = lines(caplog)
    apis = [(msg, f["api"]) for msg, f in got]
    assert apis == [
        ("kafka request", "CREATE_TOPICS"),
        ("kafka answer", "CREATE_TOPICS"),
        ("kafka request", "PRODUCE"),
        ("kafka answer", "PRODUCE"),
        ("kafka request", "FETCH"),
        ("kafka answer", "FETCH"),
        ("kafka request", "METADATA"),
        ("kafka answer", "METADATA"),
    ]
    by = {(msg, f["api"]): f for msg, f in got}
    assert by[("kafka request", "FETCH")]["body"] == "max_wait=10 min_bytes=1 traced/0@0"
    answer = by[("kafka answer", "FETCH")]["body"]
    assert answer.startswith("traced/0@0 hw=1 ")
    assert by[("kafka request", "PRODUCE")]["body"].startswith("acks=")
    assert by[("kafka request", "METADATA")]["client"] == "tests"
    assert "held_ms" in by[("kafka answer", "METADATA")]


def test_nothing_is_traced_at_info(kafka_broker, caplog):
    caplog.set_level(logging.INFO, logger=TRACE)
    with RawKafkaClient(kafka_broker.kafka_address) as c:
        create(c, "quiet", partitions=1)
    assert lines(caplog) == []


def test_sasl_tokens_are_never_written():
    body = SimpleNamespace(auth_bytes=b"n,,n=alice,r=secret-nonce")
    req = SimpleNamespace(api_key=KafkaApi.SASL_AUTHENTICATE, body=body)
    assert trace._request_text(req) == "auth_bytes=25B"
    answer = SimpleNamespace(auth_bytes=b"v=signature", error_code=0)
    assert "signature" not in trace._secret(answer)
