"""A request trace of the Kafka front-end, for diagnosing client behaviour.

With the logger ``tailrace.broker.kafka.trace`` at DEBUG (``tailrace broker
--log-level DEBUG`` turns it on; nothing else in the broker logs at DEBUG),
every Kafka request and its answer is one log line each: the peer, the
client id, the API, version and correlation id and a short form of the body
(``kafka request`` / ``kafka answer``; a held answer also says how long it
was held). Produce and Fetch bodies are summarized (partitions, offsets,
sizes, high watermarks), never written out; SASL tokens are never logged
(only their size); other bodies are their kio entity's repr, cut at
:data:`MAX_TEXT` characters. At INFO (the default) :func:`enabled` is
false and the front-end does none of this.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from ..logs import log_event
from .versions import KafkaApi

if TYPE_CHECKING:
    from ..server.connection import ConnectionInfo
    from ..services.fetch import ReadOutcome
    from .codec import KafkaRequest

__all__ = ["MAX_TEXT", "enabled", "trace_answer", "trace_fetch_answer", "trace_request"]

log = logging.getLogger("tailrace.broker.kafka.trace")

#: the longest body text of a line
MAX_TEXT = 1200


def enabled() -> bool:
    return log.isEnabledFor(logging.DEBUG)


def _api(api_key: int) -> str:
    try:
        return KafkaApi(api_key).name
    except ValueError:
        return str(api_key)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"...(+{len(text) - MAX_TEXT})"


def _secret(entity: Any) -> str:
    token = getattr(entity, "auth_bytes", None)
    size = 0 if token is None else len(token)
    error = getattr(entity, "error_code", None)
    return f"auth_bytes={size}B" + ("" if error is None else f" error_code={error!r}")


def _request_text(request: KafkaRequest) -> str:
    body = request.body
    if request.api_key == KafkaApi.SASL_AUTHENTICATE:
        return _secret(body)
    if request.api_key == KafkaApi.PRODUCE:
        parts = [
            f"{t.name}/{p.index}:{len(p.records) if p.records is not None else 0}B"
            for t in body.topic_data
            for p in t.partition_data
        ]
        return f"acks={body.acks} " + " ".join(parts)
    if request.api_key == KafkaApi.FETCH:
        parts = [
            f"{t.topic}/{p.partition}@{p.fetch_offset}" for t in body.topics for p in t.partitions
        ]
        wait = int(body.max_wait.total_seconds() * 1000)
        return f"max_wait={wait} min_bytes={body.min_bytes} " + " ".join(parts)
    return _cut(repr(body))


def trace_request(info: ConnectionInfo, request: KafkaRequest) -> float:
    """Log a request; returns the time it came in (for the answer's line)."""
    log_event(
        log,
        logging.DEBUG,
        "kafka request",
        peer=info.peer,
        client=request.client_id,
        api=_api(request.api_key),
        v=request.api_version,
        corr=request.correlation_id,
        body=_request_text(request),
    )
    return trio.current_time()


def trace_answer(request: KafkaRequest, entity: Any, started: float | None) -> None:
    """Log an answer entity (held answers say for how long)."""
    fields: dict[str, Any] = {
        "client": request.client_id,
        "api": _api(request.api_key),
        "corr": request.correlation_id,
    }
    if started is not None:
        fields["held_ms"] = round((trio.current_time() - started) * 1000, 1)
    secret = request.api_key == KafkaApi.SASL_AUTHENTICATE
    fields["body"] = _secret(entity) if secret else _cut(repr(entity))
    log_event(log, logging.DEBUG, "kafka answer", **fields)


def trace_fetch_answer(request: KafkaRequest, outcomes: list[ReadOutcome]) -> None:
    """A Fetch answer: each partition's error, high watermark and bytes."""
    parts = []
    for o in outcomes:
        size = o.slice.length if o.slice is not None else len(o.data or b"")
        error = "" if o.error is None else f" {type(o.error).__name__}"
        parts.append(f"{o.topic}/{o.partition}@{o.offset} hw={o.high_watermark} {size}B{error}")
    log_event(
        log,
        logging.DEBUG,
        "kafka answer",
        client=request.client_id,
        api="FETCH",
        corr=request.correlation_id,
        body=" ".join(parts),
    )
