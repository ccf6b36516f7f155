"""Real brokers for tests, on loopback port 0, in three shapes.

* ``broker`` (async tests): a Broker served in the test's own trio nursery.
* ``threaded_broker`` (sync tests, for the blocking clients): a Broker running
  ``trio.run`` on a thread of its own, stopped through its handle.
* ``BrokerProcess`` (tests about the process: signals, crashes): a real
  ``tailrace broker`` subprocess, stopped through its Popen handle.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from tailrace.broker.app import Broker
from tailrace.broker.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def broker_config(data_dir: Path, **flags: Any) -> Any:
    """A broker configuration on 127.0.0.1:0 with ``data_dir``.

    ``flags`` are setting names (``auto_create_topics``, or
    ``topic_defaults.flush`` spelled ``topic_defaults__flush``) -> values.
    """
    base: dict[str, Any] = {"data_dir": str(data_dir), "listen": "127.0.0.1:0"}
    for key, value in flags.items():
        base[key.replace("__", ".")] = value
    return load_config(env={}, flags=base)


@dataclass
class RunningBroker:
    broker: Broker
    address: str
    data_dir: Path

    def stop(self) -> None:
        self.broker.shutdown()


class ThreadedBroker:
    """A broker on its own thread and trio loop, for tests of blocking clients."""

    def __init__(self, data_dir: Path, *, config: Any = None, **flags: Any) -> None:
        """``config``: a whole BrokerConfig (listeners of a file, say)
        instead of 127.0.0.1:0 with ``flags``."""
        self.data_dir = data_dir
        self.broker = Broker(config if config is not None else broker_config(data_dir, **flags))
        self.address = ""
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-broker", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        assert self.address, "broker did not start"

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(self.broker.serve)
                self.address = listeners[0].address
                self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._thread.is_alive() and self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self.broker.shutdown)
        self._thread.join(30)
        assert not self._thread.is_alive(), "broker thread did not stop"
        if self._error is not None:
            raise self._error


_LISTENING = re.compile(r"listening .*address=(\S+)")
#: the Kafka listener's line (``--kafka-listen``, or a listener with
#: protocol = "kafka"); the native listener's line comes first
_LISTENING_KAFKA = re.compile(r"listening .*\bprotocol=kafka\b.*?\baddress=(\S+)")


class BrokerProcess:
    """``tailrace broker`` as a child process on a free loopback port."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        listen: str | None = "127.0.0.1:0",
        cwd: Path = ROOT,
    ) -> None:
        self.data_dir = data_dir
        #: None: the listeners of the --config file
        self.listen = listen
        self.cwd = cwd
        self.args = list(args)
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        #: the Kafka listener's address, once its line was read (kafka_address())
        self.kafka = ""
        self._kafka_found = threading.Event()
        self.log_lines: list[str] = []

    def command(self) -> list[str]:
        """The child's command line."""
        return [
            sys.executable,
            "-m",
            "tailrace.broker.cli",
            "broker",
            "--data-dir",
            str(self.data_dir),
            *(["--listen", self.listen] if self.listen is not None else []),
            "--log-format",  # the address is read from a key=value line
            "kv",
            *self.args,
        ]

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("TAILRACE_BOOTSTRAP", None)
        env.update(self.env or {})
        return env

    def on_line(self, line: str) -> str | None:
        """Read one stderr line; the listening address when it gives it."""
        m = _LISTENING.search(line)
        return m.group(1) if m else None

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        cmd = self.command()
        env = self.child_env()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=self.cwd,
        )
        self.address = ""
        self.kafka = ""
        self._kafka_found.clear()
        found = threading.Event()

        def pump() -> None:
            assert self.proc is not None
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log_lines.append(line.rstrip("\n"))
                kafka = _LISTENING_KAFKA.search(line)
                if kafka and not self.kafka:
                    self.kafka = kafka.group(1)
                    self._kafka_found.set()
                address = self.on_line(line)
                if address and not self.address:
                    self.address = address
                    found.set()
            found.set()
            self._kafka_found.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        found.wait(timeout)
        if not self.address:
            self.kill()
            raise RuntimeError("broker did not start:\n" + "\n".join(self.log_lines))
        return self

    def kafka_address(self, timeout: float = 30.0) -> str:
        """The Kafka listener's HOST:PORT (its log line follows the native one)."""
        self._kafka_found.wait(timeout)
        if not self.kafka:
            raise RuntimeError(
                "the broker logged no Kafka listener (listening ... protocol=kafka "
                "address=...):\n" + "\n".join(self.log_lines)
            )
        return self.kafka

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reap()
        return code

    def kill(self) -> None:
        """SIGKILL (a crash), then reap."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(30)
            self._reap()

    def _reap(self) -> None:
        # the stderr pump ends at EOF; then the pipe can be closed
        assert self.proc is not None
        self._pump.join(30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class LossyProxy:
    """A TCP proxy in front of a broker that loses responses on purpose.

    Requests are forwarded as they are. Responses are parsed into frames;
    when ``should_drop(api_key)`` says so, the proxy drops that response and
    cuts both connections, exactly what a client sees when a network fails
    after the broker acted on a request: the client must retry without
    knowing whether the first attempt landed.
    """

    def __init__(self, target: str, should_drop: Any) -> None:
        self.target = target
        self.should_drop = should_drop
        self.dropped = 0
        self.forwarded = 0
        self.address = ""
        self.enabled = True

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        task_status.started(self.address)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        host, port = self.target.rsplit(":", 1)
        try:
            upstream = await trio.open_tcp_stream(host, int(port))
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:

            async def pump_requests() -> None:
                try:
                    while data := await client.receive_some(65536):
                        await upstream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            async def pump_responses() -> None:
                buf = bytearray()
                try:
                    while data := await upstream.receive_some(65536):
                        buf += data
                        while len(buf) >= 12:
                            (length,) = struct.unpack_from(">I", buf)
                            if len(buf) < 4 + length:
                                break
                            frame = bytes(buf[: 4 + length])
                            del buf[: 4 + length]
                            api_key = struct.unpack_from(">H", frame, 4)[0]
                            if self.enabled and self.should_drop(api_key):
                                self.dropped += 1
                                nursery.cancel_scope.cancel()
                                return
                            self.forwarded += 1
                            await client.send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump_requests)
            nursery.start_soon(pump_responses)
