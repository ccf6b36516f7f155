"""Topic administration: create, delete, grow, describe and alter configuration.

Configuration values travel as strings, as typed at a command line
(``retention_ms=3600000``); the broker parses and checks them and answers
INVALID_CONFIG naming the key it refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ..schema import I16, I32, MaxItems, Name, Str
from ._fields import f

ConfigMap = Annotated[dict[str, Str], MaxItems(1000)]
ConfigPatch = Annotated[dict[str, Str | None], MaxItems(1000)]


@dataclass(slots=True, kw_only=True)
class CreatableTopic:
    name: Name = f("topic name: [A-Za-z0-9._-], 1-249 characters, not '.' or '..'")
    partitions: I32 = f("partition count; -1 for the broker's default", -1)
    configs: ConfigMap = f("topic configuration overriding the broker defaults", factory=dict)
    replication_factor: I32 = f(
        "replicas per partition (cluster); -1 for cluster.default_replication_factor "
        "(capped at the live brokers); a single node accepts only 1 or -1",
        -1,
    )


@dataclass(slots=True, kw_only=True)
class CreateTopicsRequest:
    topics: list[CreatableTopic] = f("topics to create")
    timeout_ms: I32 = f("how long the client waits", 30_000)
    validate_only: bool = f("check the request without creating anything", False)


@dataclass(slots=True, kw_only=True)
class CreatedTopic:
    name: Name = f("topic name")
    error_code: I16 = f("TOPIC_ALREADY_EXISTS, INVALID_TOPIC, INVALID_PARTITIONS, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)
    partitions: I32 = f("partition count the topic got", -1)


@dataclass(slots=True, kw_only=True)
class CreateTopicsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[CreatedTopic] = f("one result per requested topic", factory=list)


@dataclass(slots=True, kw_only=True)
class DeleteTopicsRequest:
    topics: list[Name] = f("topics to delete")
    timeout_ms: I32 = f("how long the client waits", 30_000)


@dataclass(slots=True, kw_only=True)
class TopicResult:
    name: Name = f("topic name")
    error_code: I16 = f("UNKNOWN_TOPIC_OR_PARTITION when there is no such topic", 0)
    error_message: Str | None = f("explanation of error_code", None)


@dataclass(slots=True, kw_only=True)
class DeleteTopicsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[TopicResult] = f("one result per requested topic", factory=list)


@dataclass(slots=True, kw_only=True)
class PartitionsTopic:
    name: Name = f("topic name")
    count: I32 = f("the new partition count: above the current one")


@dataclass(slots=True, kw_only=True)
class CreatePartitionsRequest:
    topics: list[PartitionsTopic] = f("topics to grow")
    timeout_ms: I32 = f("how long the client waits", 30_000)
    validate_only: bool = f("check the request without changing anything", False)


@dataclass(slots=True, kw_only=True)
class CreatePartitionsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    topics: list[TopicResult] = f(
        "one result per requested topic (INVALID_PARTITIONS when the count is not above the "
        "current one)",
        factory=list,
    )


@dataclass(slots=True, kw_only=True)
class ConfigResource:
    resource_type: Str = f('"topic" or "broker"')
    name: Name = f('topic name, or "" for the broker')
    keys: list[Str] | None = f("keys to describe; nil for all", None)


@dataclass(slots=True, kw_only=True)
class DescribeConfigsRequest:
    resources: list[ConfigResource] = f("what to describe")


@dataclass(slots=True, kw_only=True)
class ConfigEntry:
    name: Str = f("configuration key")
    value: Str | None = f("current value as a string; nil when sensitive", None)
    source: Str = f('"topic" (set on the topic), "broker" (broker default) or "default"', "")
    read_only: bool = f("true when AlterConfigs cannot change it", False)
    doc: Str = f("one-line description of the key", "")


@dataclass(slots=True, kw_only=True)
class ConfigResourceResult:
    resource_type: Str = f('"topic" or "broker"')
    name: Name = f("resource name")
    error_code: I16 = f("UNKNOWN_TOPIC_OR_PARTITION, INVALID_REQUEST, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)
    configs: list[ConfigEntry] = f("the described keys", factory=list)


@dataclass(slots=True, kw_only=True)
class DescribeConfigsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    resources: list[ConfigResourceResult] = f("one result per resource", factory=list)


@dataclass(slots=True, kw_only=True)
class AlterConfigResource:
    resource_type: Str = f('"topic" (the only alterable type)')
    name: Name = f("topic name")
    configs: ConfigPatch = f("key -> new value; nil reverts the key to the broker default")


@dataclass(slots=True, kw_only=True)
class AlterConfigsRequest:
    resources: list[AlterConfigResource] = f("what to change")
    validate_only: bool = f("check the request without changing anything", False)


@dataclass(slots=True, kw_only=True)
class AlterConfigResult:
    resource_type: Str = f("as requested")
    name: Name = f("as requested")
    error_code: I16 = f("INVALID_CONFIG, UNKNOWN_TOPIC_OR_PARTITION, ...", 0)
    error_message: Str | None = f("explanation of error_code", None)


@dataclass(slots=True, kw_only=True)
class AlterConfigsResponse:
    error_code: I16 = f("request-level error, 0 for none", 0)
    error_message: Str | None = f("explanation of error_code", None)
    resources: list[AlterConfigResult] = f("one result per resource", factory=list)
