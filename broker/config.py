"""Broker configuration: every key, its default, and where values come from.

Precedence, highest first: command-line flag > environment variable
(``TAILRACE_<KEY>``, or ``TAILRACE_<SECTION>_<KEY>`` for keys in a section)
> the TOML file given with ``--config`` > the default below. An unknown key
or a bad value anywhere stops start-up with a :class:`ConfigError` naming it.

The table :data:`SETTINGS` is the single source: config/broker.toml lists
every key in it with its default (tests/broker/test_config.py checks that),
and DescribeConfigs reports from it.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tailrace.client.errors import InvalidConfigError, InvalidRequestError

from .log.config import CLEANUP_POLICIES, FLUSH_MODES, LogConfig
from .security.principal import validate_principal
from .security.tls import server_context

__all__ = [
    "SETTINGS",
    "BrokerConfig",
    "ConfigError",
    "ListenerConfig",
    "Setting",
    "load_config",
    "parse_address",
]

MiB = 1024 * 1024
DAY_MS = 24 * 3600 * 1000

#: Environment variables that belong to the command-line clients, not the
#: broker; everything else starting with TAILRACE_ must be a broker key.
CLIENT_ENV = frozenset(
    {
        "TAILRACE_BOOTSTRAP",
        "TAILRACE_TLS",
        "TAILRACE_CA_FILE",
        "TAILRACE_CERT_FILE",
        "TAILRACE_KEY_FILE",
        "TAILRACE_SASL_MECHANISM",
        "TAILRACE_USERNAME",
        "TAILRACE_PASSWORD_FILE",
        "TAILRACE_ETCD",
    }
)


#: Test-only fault seams (``TAILRACE_FAULT_...``): not settings; each is
#: read by the one module it switches a safety rule off in (e.g.
#: broker/cluster/decisions.py), so the reliability harness can show that
#: its checkers catch what the rule prevents.
FAULT_SEAM_PREFIX = "TAILRACE_FAULT_"


class ConfigError(Exception):
    """A configuration key or value the broker cannot start with."""


@dataclass(frozen=True, slots=True)
class Setting:
    section: str | None
    key: str
    kind: type
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    @property
    def env(self) -> str:
        parts = ["TAILRACE", *([self.section] if self.section else []), self.key]
        return "_".join(parts).upper()


def _at_least(n: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= n else f"must be at least {n}"


def _replication_factor(value: int) -> str | None:
    return None if value == -1 or value >= 1 else "must be -1 (the default) or at least 1"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _address_or_empty(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_address(value)
    except ValueError as exc:
        return f"is not HOST:PORT ({exc}); leave it empty to turn it off"
    return None


def split_urls(text: str) -> list[str]:
    """``cluster.etcd_endpoints``: URLs separated by commas."""
    return [u.strip() for u in text.split(",") if u.strip()]


def _urls_or_empty(value: str) -> str | None:
    for url in split_urls(value):
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https") or not rest:
            return f"has {url!r}, which is not an http:// URL"
    return None


def _key_prefix(value: str) -> str | None:
    if not value.startswith("/") or value.endswith("/"):
        return "must start with '/' and not end with one (like /tailrace)"
    return None


def split_principals(text: str) -> list[str]:
    """``security.super_users``: principals separated by ';' (a certificate
    subject contains commas, so ',' cannot separate them)."""
    return [p.strip() for p in text.split(";") if p.strip()]


def _principals(value: str) -> str | None:
    for principal in split_principals(value):
        if principal == "*":
            return "must not contain '*': name each super user"
        try:
            validate_principal(principal)
        except InvalidRequestError as exc:
            return f"is not a list of principals: {exc.message}"
    return None


_LOG = LogConfig()

SETTINGS: tuple[Setting, ...] = (
    Setting(None, "data_dir", str, "./data", "directory holding every topic's logs"),
    Setting(
        None,
        "auto_create_topics",
        bool,
        False,
        "create a topic on its first produce instead of answering UNKNOWN_TOPIC_OR_PARTITION",
    ),
    Setting(
        None,
        "fetch_zero_copy",
        bool,
        True,
        "serve fetches with sendfile (plaintext listeners); false copies through user space",
    ),
    Setting(
        None,
        "log_level",
        str,
        "INFO",
        "DEBUG, INFO, WARNING or ERROR",
        _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Setting(None, "log_format", str, "kv", "kv (key=value lines) or json", _one_of("kv", "json")),
    Setting(
        None,
        "metrics_listen",
        str,
        "",
        "HOST:PORT serving /metrics (Prometheus) and /health/live, /health/ready over HTTP; "
        "empty: off",
        _address_or_empty,
    ),
    Setting(
        None,
        "retention_check_interval_ms",
        int,
        300_000,
        "how often retention deletes expired segments",
        _at_least(1),
    ),
    Setting(
        None,
        "recovery_checkpoint_interval_ms",
        int,
        60_000,
        "how often logs are flushed and the recovery point written",
        _at_least(1),
    ),
    Setting(
        None,
        "shutdown_timeout_ms",
        int,
        10_000,
        "longest a SIGTERM waits for in-flight requests before closing connections",
        _at_least(0),
    ),
    # --- [console]: the web console -----------------------------------------
    Setting(
        "console",
        "listen",
        str,
        "",
        "HOST:PORT serving the web console over HTTP (keep it on 127.0.0.1; another "
        "address needs a listener that authenticates, so the console asks for a login); "
        "empty: off",
        _address_or_empty,
    ),
    # --- [topic_defaults]: every topic starts from these ---------------------
    Setting("topic_defaults", "partitions", int, 1, "partitions of a new topic", _at_least(1)),
    Setting(
        "topic_defaults",
        "segment_bytes",
        int,
        _LOG.segment_bytes,
        "roll the active segment when the next batch would pass this size",
    ),
    Setting(
        "topic_defaults",
        "segment_ms",
        int,
        _LOG.segment_ms,
        "roll the active segment after this much record time",
    ),
    Setting(
        "topic_defaults",
        "segment_index_bytes",
        int,
        _LOG.segment_index_bytes,
        "capacity of a segment's offset index; a full index rolls the segment",
    ),
    Setting(
        "topic_defaults",
        "index_interval_bytes",
        int,
        _LOG.index_interval_bytes,
        "log bytes between offset-index entries",
    ),
    Setting(
        "topic_defaults",
        "retention_ms",
        int,
        _LOG.retention_ms,
        "delete sealed segments whose newest record is older than this; -1 keeps all",
    ),
    Setting(
        "topic_defaults",
        "retention_bytes",
        int,
        _LOG.retention_bytes,
        "delete the oldest sealed segments while a partition is larger; -1 keeps all",
    ),
    Setting(
        "topic_defaults",
        "flush",
        str,
        _LOG.flush,
        "sync (ack after fsync, group commit), interval (fsync every flush_ms) or none",
        _one_of(*FLUSH_MODES),
    ),
    Setting("topic_defaults", "flush_ms", int, _LOG.flush_ms, "fsync period of flush = interval"),
    Setting(
        "topic_defaults",
        "preallocate_bytes",
        int,
        _LOG.preallocate_bytes,
        "largest step by which the active segment grows (posix_fallocate; from 1 MiB, doubling)",
    ),
    Setting(
        "topic_defaults",
        "producer_id_expiration_ms",
        int,
        _LOG.producer_id_expiration_ms,
        "forget an idempotent producer's state after this long without a batch",
    ),
    Setting(
        "topic_defaults",
        "cleanup_policy",
        str,
        _LOG.cleanup_policy,
        "delete (retention deletes old segments), compact (keep the latest record per key; "
        "keys required) or compact,delete",
        _one_of(*CLEANUP_POLICIES, "delete,compact"),
    ),
    Setting(
        "topic_defaults",
        "delete_retention_ms",
        int,
        _LOG.delete_retention_ms,
        "compacted topics: keep a tombstone (null value) this long after its timestamp",
    ),
    Setting(
        "topic_defaults",
        "min_cleanable_dirty_ratio",
        float,
        _LOG.min_cleanable_dirty_ratio,
        "compacted topics: clean when the uncleaned share of the sealed segments reaches this",
    ),
    Setting(
        "topic_defaults",
        "min_compaction_lag_ms",
        int,
        _LOG.min_compaction_lag_ms,
        "compacted topics: never clean a segment whose newest record is younger than this",
    ),
    Setting(
        "topic_defaults",
        "max_compaction_lag_ms",
        int,
        _LOG.max_compaction_lag_ms,
        "compacted topics: clean a segment whose oldest record is this old, whatever the ratio",
    ),
    Setting(
        "topic_defaults",
        "min_insync_replicas",
        int,
        _LOG.min_insync_replicas,
        "cluster mode: an acks=all write needs this many in-sync replicas; "
        "-1: min(2, replication factor)",
    ),
    # --- [cleaner]: the log cleaner of compacted topics ---------------------
    Setting(
        "cleaner",
        "threads",
        int,
        1,
        "partitions cleaned at once, each in a worker thread; 0 turns the cleaner off",
        _at_least(0),
    ),
    Setting(
        "cleaner",
        "key_map_bytes",
        int,
        128 * MiB,
        "memory for one cleaning's key map (per thread); more keys than fit are cleaned in "
        "several passes",
        _at_least(1 * MiB),
    ),
    Setting(
        "cleaner",
        "io_max_bytes_per_s",
        int,
        0,
        "bytes per second all cleaner threads together read and write at most; 0 unlimited",
        _at_least(0),
    ),
    Setting(
        "cleaner",
        "check_interval_ms",
        int,
        15_000,
        "how often the cleaner looks for a partition to clean",
        _at_least(1),
    ),
    # --- [limits]: what one client may cost the broker ---------------------
    Setting(
        "limits",
        "max_frame_bytes",
        int,
        16 * MiB,
        "largest request frame; a larger length prefix closes the connection",
        _at_least(1024),
    ),
    Setting(
        "limits",
        "max_batch_bytes",
        int,
        _LOG.max_batch_bytes,
        "largest record batch a produce may carry (a topic may lower it)",
    ),
    Setting(
        "limits",
        "max_connections",
        int,
        10_000,
        "open connections beyond this are closed at accept",
        _at_least(1),
    ),
    Setting(
        "limits",
        "connections_max_idle_ms",
        int,
        600_000,
        "close a connection idle (or not reading its responses) this long; 0 never",
        _at_least(0),
    ),
    Setting(
        "limits",
        "max_in_flight_requests",
        int,
        128,
        "requests one connection may have unanswered before the broker stops reading it",
        _at_least(1),
    ),
    Setting(
        "limits",
        "max_partitions_per_topic",
        int,
        10_000,
        "largest partition count CreateTopics accepts",
        _at_least(1),
    ),
    # --- [groups]: consumer groups and committed offsets --------------------
    Setting(
        "groups",
        "session_timeout_min_ms",
        int,
        6_000,
        "shortest session timeout a member may ask for",
        _at_least(1),
    ),
    Setting(
        "groups",
        "session_timeout_max_ms",
        int,
        1_800_000,
        "longest session timeout a member may ask for",
        _at_least(1),
    ),
    Setting(
        "groups",
        "heartbeat_interval_ms",
        int,
        3_000,
        "longest the broker holds a heartbeat that has nothing new (at most a third of the "
        "member's session timeout)",
        _at_least(1),
    ),
    Setting(
        "groups",
        "offsets_retention_ms",
        int,
        7 * DAY_MS,
        "delete a group's committed offsets this long after the group became empty "
        "(or the offset was committed, if later)",
        _at_least(1),
    ),
    Setting(
        "groups",
        "offsets_retention_check_interval_ms",
        int,
        600_000,
        "how often expired committed offsets are deleted",
        _at_least(1),
    ),
    Setting(
        "groups",
        "max_group_size",
        int,
        1_000,
        "members one group may have; more are refused with GROUP_MAX_SIZE_REACHED",
        _at_least(1),
    ),
    Setting(
        "groups",
        "initial_rebalance_delay_ms",
        int,
        3_000,
        "an empty classic (Kafka) group's first rebalance waits this long for more "
        "members, again while members keep joining (Kafka's "
        "group.initial.rebalance.delay.ms); 0 completes it as soon as all have joined",
        _at_least(0),
    ),
    Setting(
        "groups",
        "offsets_topic_partitions",
        int,
        50,
        "cluster mode: partitions of __consumer_offsets when the cluster creates it (a group's "
        "coordinator is the leader of its partition); a single node keeps one",
        _at_least(1),
    ),
    Setting(
        "groups",
        "offsets_topic_replication_factor",
        int,
        -1,
        "cluster mode: replicas of each __consumer_offsets partition; -1: "
        "cluster.default_replication_factor, capped at the brokers alive when it is created",
        _replication_factor,
    ),
    # --- [security]: authentication and authorization ---------------------
    Setting(
        "security",
        "users_file",
        str,
        "",
        "the SCRAM users file (tailrace users add); needed by listeners with "
        "authentication = sasl; changes are picked up without a restart",
    ),
    Setting(
        "security",
        "authorizer",
        str,
        "auto",
        "enforce ACLs on every listener: auto (when some listener authenticates), on, or off",
        _one_of("auto", "on", "off"),
    ),
    Setting(
        "security",
        "acl_file",
        str,
        "",
        "where the broker keeps its ACLs (tailrace acls add); empty: DATA_DIR/~acls.json",
    ),
    Setting(
        "security",
        "super_users",
        str,
        "",
        "principals allowed everything, separated by ';' (User:admin;User:CN=ops,O=acme)",
        _principals,
    ),
    Setting(
        "security",
        "auth_timeout_ms",
        int,
        10_000,
        "close a connection that has not finished TLS and authentication within this",
        _at_least(1),
    ),
    Setting(
        "security",
        "auth_failure_delay_ms",
        int,
        1_000,
        "wait this long before answering a failed authentication (then close)",
        _at_least(0),
    ),
    Setting(
        "security",
        "max_frame_bytes_before_auth",
        int,
        65_536,
        "largest request frame before authentication; a larger length prefix closes the connection",
        _at_least(4096),
    ),
    # --- [cluster]: cluster mode (etcd); off unless node_id and etcd_endpoints --
    Setting(
        "cluster",
        "node_id",
        int,
        -1,
        "this broker's id in a cluster (0 or more, unique); -1: single node (the default)",
        _at_least(-1),
    ),
    Setting(
        "cluster",
        "etcd_endpoints",
        str,
        "",
        "etcd client URLs, comma-separated (http://127.0.0.1:2379,...); empty: single node",
        _urls_or_empty,
    ),
    Setting(
        "cluster",
        "advertised_address",
        str,
        "",
        "HOST:PORT other brokers and clients reach this broker's native listener at; "
        "empty: the first native listener's bound address",
        _address_or_empty,
    ),
    Setting(
        "cluster",
        "bind_host",
        str,
        "",
        "source address of this broker's outgoing connections (etcd, other brokers), "
        "e.g. 127.0.0.2; empty: chosen by the OS",
    ),
    Setting(
        "cluster",
        "peer_tls_ca_file",
        str,
        "",
        "CA file (PEM) to verify other brokers' native listeners with; set: this broker's "
        "connections to them use TLS",
    ),
    Setting(
        "cluster",
        "peer_tls_cert_file",
        str,
        "",
        "certificate (PEM) this broker presents to other brokers' mutual-TLS listeners",
    ),
    Setting(
        "cluster",
        "peer_tls_key_file",
        str,
        "",
        "key (PEM) of peer_tls_cert_file, unless in the same file",
    ),
    Setting(
        "cluster",
        "peer_sasl_username",
        str,
        "",
        "SCRAM-SHA-256 user this broker authenticates as on other brokers' SASL listeners; "
        "grant it cluster_action on the cluster",
    ),
    Setting(
        "cluster",
        "peer_sasl_password_file",
        str,
        "",
        "file holding that user's password (read at each connection)",
    ),
    Setting(
        "cluster",
        "etcd_prefix",
        str,
        "/tailrace",
        "every key of this cluster lives under this etcd prefix",
        _key_prefix,
    ),
    Setting(
        "cluster",
        "session_timeout_ms",
        int,
        6_000,
        "TTL of the broker's etcd lease: a broker that cannot renew it this long is "
        "presumed dead (its registration, and the controller role, go); whole seconds",
        _at_least(1_000),
    ),
    Setting(
        "cluster",
        "peer_liveness",
        bool,
        True,
        "keep an idle connection to every other broker; when one's port refuses "
        "connections after it closed (its process died), end its session at once "
        "instead of after session_timeout_ms",
    ),
    Setting(
        "cluster",
        "etcd_timeout_ms",
        int,
        2_000,
        "deadline of one etcd request before the next endpoint is tried",
        _at_least(1),
    ),
    Setting(
        "cluster",
        "default_replication_factor",
        int,
        3,
        "replicas of a topic created without one (capped at the live brokers)",
        _at_least(1),
    ),
    Setting(
        "cluster",
        "replica_lag_time_max_ms",
        int,
        10_000,
        "a follower that has not caught up with its leader for this long leaves the in-sync "
        "replicas (acks=all stops waiting for it)",
        _at_least(1),
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}
#: command-line flags not spelled like their setting
_FLAG_NAMES = {
    "metrics_listen": "--metrics",
    "console.listen": "--console",
    "cluster.node_id": "--node-id",
    "cluster.etcd_endpoints": "--cluster-etcd",
}
_SECTIONS = {s.section for s in SETTINGS if s.section}
#: topic_defaults keys that are LogConfig fields (all but partitions)
_LOG_KEYS = set(LogConfig.field_names())


SECURITY_PROTOCOLS = ("plaintext", "tls")
AUTHENTICATIONS = ("none", "sasl", "mtls")
SASL_MECHANISMS = ("SCRAM-SHA-256", "PLAIN")
#: what a listener speaks: tailrace's own protocol or Kafka's wire protocol
PROTOCOLS = ("tailrace", "kafka")


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One listening address, its transport and who may connect.

    * ``security``: ``plaintext`` or ``tls`` (``tls_cert_file`` and
      ``tls_key_file`` required; ``tls_client_ca_file`` makes clients present
      a certificate signed by that CA: mutual TLS).
    * ``protocol``: ``tailrace`` (the native protocol, default) or ``kafka``
      (Kafka's wire protocol for unmodified Kafka clients; docs/kafka.md).
    * ``authentication``: ``none`` (the principal is User:ANONYMOUS),
      ``sasl`` (SaslHandshake/SaslAuthenticate first, with one of
      ``sasl_mechanisms``; PLAIN only over TLS or on a loopback address) or
      ``mtls`` (a TLS listener with a client CA: the verified certificate's
      subject is the principal).
    """

    name: str
    host: str
    port: int
    security: str = "plaintext"
    authentication: str = "none"
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    sasl_mechanisms: tuple[str, ...] = SASL_MECHANISMS
    protocol: str = "tailrace"

    @property
    def kafka(self) -> bool:
        return self.protocol == "kafka"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.security == "tls"

    def describe(self) -> str:
        """``name=address`` plus what is not the default (for logs and DescribeConfigs)."""
        text = f"{self.name}={self.address}"
        extras = [
            x
            for x in (self.protocol, self.security, self.authentication)
            if x not in ("tailrace", "plaintext", "none")
        ]
        return text + (f" ({', '.join(extras)})" if extras else "")


DEFAULT_LISTENERS = (ListenerConfig("default", "127.0.0.1", 7420),)
#: the ACL file's name in the data directory (``~``: never a topic name)
ACL_FILE = "~acls.json"


@dataclass(frozen=True)
class BrokerConfig:
    """The broker's effective configuration."""

    listeners: tuple[ListenerConfig, ...] = DEFAULT_LISTENERS
    values: Mapping[str, Any] = field(default_factory=lambda: {s.name: s.default for s in SETTINGS})
    #: name -> where the value came from: "default", "file", "env" or "flag"
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        # top-level keys read as attributes: config.data_dir
        values = object.__getattribute__(self, "values")
        if name in values:
            return values[name]
        raise AttributeError(name)

    def get(self, section: str, key: str) -> Any:
        return self.values[f"{section}.{key}"]

    @property
    def topic_defaults(self) -> LogConfig:
        """Defaults of every topic's log config (broker-wide max_batch_bytes included)."""
        mapping = {
            s.key: self.values[s.name]
            for s in SETTINGS
            if s.section == "topic_defaults" and s.key in _LOG_KEYS
        }
        mapping["max_batch_bytes"] = self.values["limits.max_batch_bytes"]
        return LogConfig().with_overrides(mapping)

    @property
    def default_partitions(self) -> int:
        return self.values["topic_defaults.partitions"]

    def differences(self) -> dict[str, Any]:
        """Keys whose value is not the default (logged at start-up)."""
        out = {s.name: self.values[s.name] for s in SETTINGS if self.values[s.name] != s.default}
        if self.listeners != DEFAULT_LISTENERS:
            out["listeners"] = ",".join(lc.describe() for lc in self.listeners)
        return out

    @property
    def authenticates(self) -> bool:
        """Whether some listener establishes who its clients are."""
        return any(lc.authentication != "none" for lc in self.listeners)

    @property
    def authorizer_enabled(self) -> bool:
        """Whether ACLs are enforced (security.authorizer: auto follows authentication)."""
        mode = self.values["security.authorizer"]
        return mode == "on" or (mode == "auto" and self.authenticates)

    @property
    def acl_path(self) -> str:
        return self.values["security.acl_file"] or os.path.join(self.data_dir, ACL_FILE)

    @property
    def super_users(self) -> list[str]:
        return split_principals(self.values["security.super_users"])

    @property
    def clustered(self) -> bool:
        """Whether this broker runs in cluster mode ([cluster] node_id and etcd)."""
        return self.values["cluster.node_id"] >= 0


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {text!r}: expected [host]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {text!r}: expected host:port")
    if not host:
        raise ValueError(f"bad address {text!r}: empty host")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad address {text!r}: port must be 0-65535")
    return host, int(port_text)


def _parse_text(setting: Setting, raw: str) -> Any:
    """Values from the environment or flags arrive as strings."""
    if setting.kind is bool:
        low = raw.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{raw!r} is not a boolean (true/false)")
    if setting.kind is float:
        try:
            return float(raw.strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    if setting.kind is int:
        text = raw.strip().replace("_", "")
        body = text[1:] if text[:1] in "+-" else text
        if not body.isdigit() or not body.isascii():
            raise ValueError(f"{raw!r} is not an integer")
        return int(text)
    return raw


def _check(setting: Setting, value: Any, origin: str) -> Any:
    if setting.kind is int and (type(value) is not int):
        raise ConfigError(f"{origin}: {setting.name} must be an integer, got {value!r}")
    if setting.kind is float:
        if type(value) not in (int, float):
            raise ConfigError(f"{origin}: {setting.name} must be a number, got {value!r}")
        value = float(value)
    if setting.kind is bool and type(value) is not bool:
        raise ConfigError(f"{origin}: {setting.name} must be true or false, got {value!r}")
    if setting.kind is str and type(value) is not str:
        raise ConfigError(f"{origin}: {setting.name} must be a string, got {value!r}")
    if setting.check is not None:
        problem = setting.check(value)
        if problem:
            raise ConfigError(f"{origin}: {setting.name} = {value!r} {problem}")
    return value


def _listeners_from_toml(raw: Any, origin: str) -> tuple[ListenerConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{origin}: listeners must be a non-empty array of tables")
    out = []
    names = set()
    for i, item in enumerate(raw):
        where = f"{origin}: listeners[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = set(item) - _LISTENER_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]}")
        name = item.get("name", f"listener{i}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name must be a non-empty string")
        if name in names:
            raise ConfigError(f"{where}.name {name!r} is used twice")
        names.add(name)
        address = item.get("address")
        if not isinstance(address, str):
            raise ConfigError(f"{where}.address must be a string host:port")
        try:
            host, port = parse_address(address)
        except ValueError as exc:
            raise ConfigError(f"{where}.address: {exc}") from None
        out.append(_listener_security(ListenerConfig(name, host, port), item, where))
    return tuple(out)


_LISTENER_KEYS = {
    "name",
    "address",
    "security",
    "authentication",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "sasl_mechanisms",
    "protocol",
}


def _listener_security(lc: ListenerConfig, item: dict, where: str) -> ListenerConfig:
    """The security keys of one ``[[listeners]]`` table, checked together."""
    fields: dict[str, Any] = {}
    for key, choices in (("security", SECURITY_PROTOCOLS), ("authentication", AUTHENTICATIONS)):
        value = item.get(key, getattr(lc, key))
        if value not in choices:
            raise ConfigError(f"{where}.{key} = {value!r} must be one of {', '.join(choices)}")
        fields[key] = value
    for key in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        value = item.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{key} must be a file path (a string)")
        fields[key] = value
    mechanisms = item.get("sasl_mechanisms", list(SASL_MECHANISMS))
    if (
        not isinstance(mechanisms, list)
        or not mechanisms
        or any(m not in SASL_MECHANISMS for m in mechanisms)
        or len(set(mechanisms)) != len(mechanisms)
    ):
        raise ConfigError(
            f"{where}.sasl_mechanisms must be a non-empty list of {', '.join(SASL_MECHANISMS)}"
        )
    fields["sasl_mechanisms"] = tuple(mechanisms)
    protocol = item.get("protocol", "tailrace")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{where}.protocol = {protocol!r} must be one of {', '.join(PROTOCOLS)}")
    fields["protocol"] = protocol
    tls = fields["security"] == "tls"
    tls_files = [k for k in ("tls_cert_file", "tls_key_file", "tls_client_ca_file") if fields[k]]
    if not tls and tls_files:
        raise ConfigError(f"{where}.{tls_files[0]} is set but security is not tls")
    if tls and not (fields["tls_cert_file"] and fields["tls_key_file"]):
        raise ConfigError(f"{where}: security = tls needs tls_cert_file and tls_key_file")
    if fields["authentication"] == "mtls" and not (tls and fields["tls_client_ca_file"]):
        raise ConfigError(
            f"{where}: authentication = mtls needs security = tls and tls_client_ca_file "
            "(the CA that signs client certificates)"
        )
    if "sasl_mechanisms" in item and fields["authentication"] != "sasl":
        raise ConfigError(f"{where}.sasl_mechanisms is set but authentication is not sasl")
    return ListenerConfig(lc.name, lc.host, lc.port, **fields)


def _listeners_from_text(
    text: str, origin: str, protocol: str = "tailrace"
) -> tuple[ListenerConfig, ...]:
    out = []
    first, rest = ("default", "listener") if protocol == "tailrace" else (protocol, protocol)
    for i, part in enumerate(p for p in text.split(",") if p.strip()):
        try:
            host, port = parse_address(part)
        except ValueError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        name = first if i == 0 else f"{rest}{i}"
        out.append(ListenerConfig(name, host, port, protocol=protocol))
    if not out:
        raise ConfigError(f"{origin}: no address given")
    return tuple(out)


def load_config(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> BrokerConfig:
    """Build the effective configuration.

    ``flags`` maps setting names (``data_dir``, ``limits.max_connections``) or
    ``listen`` to values already parsed from the command line (strings are
    parsed like environment values).
    """
    env = os.environ if env is None else env
    flags = flags or {}
    values: dict[str, Any] = {s.name: s.default for s in SETTINGS}
    sources: dict[str, str] = {s.name: "default" for s in SETTINGS}
    listeners = DEFAULT_LISTENERS
    #: --kafka-listen / TAILRACE_KAFKA_LISTEN: added to the other listeners
    kafka_listeners: tuple[ListenerConfig, ...] = ()

    if path is not None:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for key, raw in doc.items():
            if key == "listeners":
                listeners = _listeners_from_toml(raw, path)
            elif key in _SECTIONS:
                if not isinstance(raw, dict):
                    raise ConfigError(f"{path}: [{key}] must be a table")
                for sub, subraw in raw.items():
                    setting = _BY_NAME.get(f"{key}.{sub}")
                    if setting is None:
                        raise ConfigError(f"{path}: unknown key {sub!r} in [{key}]")
                    values[setting.name] = _check(setting, subraw, path)
                    sources[setting.name] = "file"
            else:
                setting = _BY_NAME.get(key)
                if setting is None:
                    raise ConfigError(f"{path}: unknown key {key!r}")
                values[setting.name] = _check(setting, raw, path)
                sources[setting.name] = "file"

    env_names = {s.env: s for s in SETTINGS}
    for name, raw in env.items():
        if not name.startswith("TAILRACE_") or name in CLIENT_ENV:
            continue
        if name.startswith(FAULT_SEAM_PREFIX):
            continue  # read by the code it breaks, for the fault harness only
        if name == "TAILRACE_LISTEN":
            listeners = _listeners_from_text(raw, name)
            continue
        if name == "TAILRACE_KAFKA_LISTEN":
            kafka_listeners = _listeners_from_text(raw, name, "kafka")
            continue
        setting = env_names.get(name)
        if setting is None:
            raise ConfigError(f"environment: unknown variable {name}")
        try:
            value = _parse_text(setting, raw)
        except ValueError as exc:
            raise ConfigError(f"environment: {name}: {exc}") from None
        values[setting.name] = _check(setting, value, f"environment {name}")
        sources[setting.name] = "env"

    for name, raw in flags.items():
        if raw is None:
            continue
        if name == "listen":
            listeners = _listeners_from_text(raw, "--listen")
            continue
        if name == "kafka_listen":
            kafka_listeners = _listeners_from_text(raw, "--kafka-listen", "kafka")
            continue
        setting = _BY_NAME[name]
        value = (
            _parse_text(setting, raw) if isinstance(raw, str) and setting.kind is not str else raw
        )
        flag = _FLAG_NAMES.get(name) or f"--{name.replace('_', '-')}"
        values[setting.name] = _check(setting, value, flag)
        sources[setting.name] = "flag"

    if kafka_listeners:
        taken = {lc.name for lc in listeners}
        clash = [lc.name for lc in kafka_listeners if lc.name in taken]
        if clash:
            raise ConfigError(f"--kafka-listen: a listener is already named {clash[0]!r}")
        listeners = (*listeners, *kafka_listeners)
    # the native listeners first: the first "listening" line names a native one
    listeners = tuple(sorted(listeners, key=lambda lc: lc.kafka))
    config = BrokerConfig(listeners=listeners, values=values, sources=sources)
    if values["metrics_listen"]:
        host, port = parse_address(values["metrics_listen"])
        for lc in listeners:
            if port and (lc.host, lc.port) == (host, port):
                raise ConfigError(
                    f"metrics_listen {values['metrics_listen']} is the address of listener "
                    f"{lc.name!r} too"
                )
    _check_console(config)
    _check_cluster(config)
    for lc in listeners:
        if lc.tls:
            try:
                server_context(lc)
            except InvalidConfigError as exc:
                raise ConfigError(exc.message) from None
    if any(lc.authentication == "sasl" for lc in listeners) and not values["security.users_file"]:
        raise ConfigError(
            "a listener with authentication = sasl needs security.users_file "
            "(create it with tailrace users add)"
        )
    if values["groups.session_timeout_min_ms"] > values["groups.session_timeout_max_ms"]:
        raise ConfigError(
            "groups.session_timeout_min_ms must not exceed groups.session_timeout_max_ms"
        )
    try:
        config.topic_defaults  # noqa: B018 - validates the topic defaults as a whole
    except InvalidConfigError as exc:
        raise ConfigError(f"topic_defaults: {exc}") from None
    return config


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_console(config: BrokerConfig) -> None:
    """The console changes topics and offsets: off loopback it must ask for
    a login, and it must not share an address with a listener or /metrics."""
    text = config.values["console.listen"]
    if not text:
        return
    host, port = parse_address(text)
    taken = [(lc.host, lc.port, f"listener {lc.name!r}") for lc in config.listeners]
    if config.values["metrics_listen"]:
        taken.append((*parse_address(config.values["metrics_listen"]), "metrics_listen"))
    for other_host, other_port, what in taken:
        if port and (other_host, other_port) == (host, port):
            raise ConfigError(f"console.listen {text} is the address of {what} too")
    if not _is_loopback(host) and not (
        config.authenticates and config.values["security.users_file"]
    ):
        raise ConfigError(
            f"console.listen {text} is not a loopback address and no listener authenticates: "
            "anyone who reaches it could change topics and offsets; bind it to 127.0.0.1 or "
            "turn on SASL authentication (the console then asks for a login)"
        )


def _check_cluster(config: BrokerConfig) -> None:
    """Cluster mode needs both a node id and etcd; single node neither."""
    node_id = config.values["cluster.node_id"]
    endpoints = config.values["cluster.etcd_endpoints"]
    if (node_id >= 0) != bool(split_urls(endpoints)):
        raise ConfigError(
            "cluster mode needs both cluster.node_id (--node-id) and cluster.etcd_endpoints "
            "(--cluster-etcd); set neither for a single node"
        )


def describe(config: BrokerConfig) -> list[tuple[str, Any, str, str]]:
    """(name, value, source, doc) for every setting, for DescribeConfigs."""
    return [
        (s.name, config.values[s.name], config.sources.get(s.name, "default"), s.doc)
        for s in SETTINGS
    ]
