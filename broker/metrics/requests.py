"""Per-API request metrics, wrapped around the broker's dispatch.

One wrapper for every API rather than a hook in each handler: the count,
the error count and the latency are taken where every request passes. Cost
per request: one dict look-up, a counter ``.inc()``, a histogram
``.observe()`` and two clock reads; a request that waits (``Later``) also
gets one more small object and coroutine frame. The broker installs the
wrapper only when the metrics endpoint is on.

Latency runs from dispatch until the response is ready to write (for a
waiting request, until its wait ends), so it includes the fsync a
``flush = sync`` produce waits for and a fetch's long poll, and excludes
the time the connection's writer takes to send.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio

from ..server.connection import Later
from .definitions import ApiMetrics, api_metrics

__all__ = ["metered"]

Dispatch = Callable[[Any, Any], Any]


def metered(dispatch: Dispatch) -> Dispatch:
    """``dispatch`` counting requests, errors and latency per API."""
    clock = time.perf_counter

    def dispatch_metered(info: Any, request: Any) -> Any:
        m = api_metrics(request.api_key)
        m.requests.inc()
        start = clock()
        try:
            reply = dispatch(info, request)
        except Exception:
            m.errors.inc()
            m.seconds.observe(clock() - start)
            raise
        if type(reply) is Later:
            return Later(_finish, m, start, reply, barrier=reply.barrier)
        m.seconds.observe(clock() - start)
        return reply

    return dispatch_metered


async def _finish(m: ApiMetrics, start: float, later: Later) -> Any:
    try:
        reply = await later.fn(*later.args)
    except trio.Cancelled:
        raise  # the connection ended: no answer, nothing to time
    except Exception:
        m.errors.inc()
        m.seconds.observe(time.perf_counter() - start)
        raise
    m.seconds.observe(time.perf_counter() - start)
    return reply
