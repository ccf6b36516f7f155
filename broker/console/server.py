"""Serving the console: hypercorn's trio worker in the broker's nursery.

:func:`serve_console` binds ``host:port`` (0: a free port), reports the
bound address through ``task_status`` and serves until its nursery is
cancelled (the broker cancels it before it closes its logs, so no page is
ever served from a closed log). Hypercorn parses HTTP/1.1 (h11) and bounds
what a client may send: request heads (``h11_max_incomplete_size``), idle
keep-alive connections (``keep_alive_timeout``) and the time a client has to
send its request (``read_timeout``).
"""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from .web import Console

__all__ = ["serve_console"]

log = logging.getLogger("tailrace.console")


def hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("tailrace.console.http")
    config.h11_max_incomplete_size = 16 * 1024
    config.keep_alive_timeout = 30
    config.read_timeout = 30
    config.graceful_timeout = 1.0
    config.include_server_header = False
    return config


async def serve_console(
    console: Console,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``console`` on ``host:port`` until cancelled."""
    config = hypercorn_config(host, port)

    async def started(task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(console.app, config, task_status=task_status, mode="asgi")

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(started)
        address = binds[0].split("://", 1)[1]
        task_status.started(address)
