"""Every error tailrace can put on the wire has a Kafka code a Kafka client
knows (like httpx's test that every httpcore exception is mapped)."""

from __future__ import annotations

from kio.schema.errors import ErrorCode as KafkaErrorCode

from tailrace.broker.kafka.errors import kafka_code, kafka_error
from tailrace.client import errors
from tailrace.client.errors import BrokerError, ErrorCode


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out.add(sub)
        out |= _all_subclasses(sub)
    return out


def test_every_error_class_maps_to_a_kafka_code():
    unmapped = []
    for cls in _all_subclasses(BrokerError):
        code = kafka_code(cls.__new__(cls))  # only the class's code is read
        if code not in KafkaErrorCode._value2member_map_:
            unmapped.append(cls.__name__)
    assert unmapped == []


def test_every_wire_code_maps_and_kafka_codes_are_kept():
    for code in ErrorCode:
        if code == ErrorCode.NONE:
            continue
        cls = errors.error_for_code(int(code), "x")
        mapped = kafka_code(cls) if isinstance(cls, BrokerError) else int(code)
        assert mapped in KafkaErrorCode._value2member_map_, code
        if code < 1000:
            assert mapped == int(code), code
        else:
            assert mapped != int(code), code


def test_no_error_is_code_zero():
    assert kafka_error(None) is KafkaErrorCode.none
    assert kafka_error(errors.StorageFullError("full")) is KafkaErrorCode.kafka_storage_error
