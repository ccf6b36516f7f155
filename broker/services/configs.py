"""Describe and alter configuration, one policy for both front-ends.

* a topic's settings: every LogConfig key with its value and where it comes
  from (``topic`` override, ``broker`` default set in the broker's
  configuration, or the built-in ``default``); describe needs ``describe``
  on the topic, altering ``alter`` on it; the broker's own topics cannot be
  altered; ``validate_only`` checks everything and changes nothing;
* the broker's settings: read-only here (they come from its file,
  environment and flags); describing them needs ``describe`` on the
  cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tailrace.client.errors import (
    InvalidConfigError,
    InvalidRequestError,
    UnknownTopicOrPartitionError,
)

from ..config import SETTINGS
from ..log.config import LogConfig
from ..security.authz import ALTER, CLUSTER, CLUSTER_NAME, DESCRIBE, TOPIC
from .topics import check_allowed, refuse_internal

if TYPE_CHECKING:
    from ..handlers.context import BrokerContext
    from ..server.connection import ConnectionInfo

__all__ = [
    "ConfigValue",
    "alter_topic",
    "broker_configs",
    "refuse_broker_alter",
    "topic_configs",
]

_TOPIC_DOCS = {s.key: s.doc for s in SETTINGS if s.section == "topic_defaults"}
_TOPIC_DOCS["max_batch_bytes"] = next(s.doc for s in SETTINGS if s.name == "limits.max_batch_bytes")


@dataclass(slots=True)
class ConfigValue:
    name: str
    value: str
    #: "topic", "broker" or "default"
    source: str
    read_only: bool = False
    doc: str = ""


def topic_configs(ctx: BrokerContext, info: ConnectionInfo, name: str) -> list[ConfigValue]:
    check_allowed(ctx, info, DESCRIBE, TOPIC, name)
    overrides, config = _topic_settings(ctx, name)
    sources = ctx.config.sources
    out = []
    for key in LogConfig.field_names():
        if key in overrides:
            source = "topic"
        else:
            setting = (
                "limits.max_batch_bytes" if key == "max_batch_bytes" else f"topic_defaults.{key}"
            )
            source = "broker" if sources.get(setting, "default") != "default" else "default"
        out.append(
            ConfigValue(key, str(getattr(config, key)), source, doc=_TOPIC_DOCS.get(key, ""))
        )
    return out


def _topic_settings(ctx: BrokerContext, name: str) -> tuple[Mapping[str, object], LogConfig]:
    """The topic's overrides and effective config: this broker's copy's, or
    in a cluster, for a topic this broker holds no log of, the cluster's
    (its configs in etcd over this broker's defaults)."""
    try:
        topic = ctx.manager.topic(name)
    except UnknownTopicOrPartitionError:
        view = ctx.cluster.snapshot() if ctx.cluster is not None else None
        spec = view.topics.get(name) if view is not None else None
        if spec is None:
            raise
        return spec.configs, ctx.manager.defaults.with_overrides(dict(spec.configs))
    return topic.overrides, topic.config


def broker_configs(ctx: BrokerContext, info: ConnectionInfo) -> list[ConfigValue]:
    check_allowed(ctx, info, DESCRIBE, CLUSTER, CLUSTER_NAME)
    out = []
    for setting in SETTINGS:
        value = ctx.config.values[setting.name]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        source = ctx.config.sources.get(setting.name, "default")
        out.append(
            ConfigValue(
                setting.name,
                text,
                "default" if source == "default" else "broker",
                read_only=True,
                doc=setting.doc,
            )
        )
    out.append(
        ConfigValue(
            "listeners",
            ",".join(lc.describe() for lc in ctx.config.listeners),
            "broker",
            read_only=True,
            doc="where the broker listens",
        )
    )
    return out


def refuse_broker_alter(ctx: BrokerContext, info: ConnectionInfo) -> None:
    """Altering the broker's settings: refused (after the authorization
    check, so an unauthorized principal learns nothing more)."""
    check_allowed(ctx, info, ALTER, CLUSTER, CLUSTER_NAME)
    raise InvalidRequestError(
        "only topic configuration can be altered; broker settings come from "
        "its configuration file, environment and flags"
    )


async def alter_topic(
    ctx: BrokerContext,
    info: ConnectionInfo,
    name: str,
    set_keys: Mapping[str, str],
    delete_keys: Iterable[str],
    *,
    validate_only: bool,
) -> None:
    """Set ``set_keys`` and revert ``delete_keys`` to the broker default."""
    check_allowed(ctx, info, ALTER, TOPIC, name)
    refuse_internal(name, "alter")
    topic = ctx.manager.topic(name)
    delete_keys = list(delete_keys)
    if validate_only:
        over = {k: v for k, v in topic.overrides.items() if k not in delete_keys}
        over.update(set_keys)
        ctx.manager.defaults.with_overrides(over)
        unknown = [k for k in delete_keys if k not in LogConfig.field_names()]
        if unknown:
            raise InvalidConfigError(f"{unknown[0]}: unknown log config key")
        return
    await ctx.manager.alter_topic_config(name, dict(set_keys), delete_keys)
