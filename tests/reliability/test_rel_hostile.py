"""Scenario 8: malformed and hostile input against a live broker process.

One ``tailrace broker`` subprocess (idle timeout 2 s, max_connections 400)
takes, one after the other and then all at once:

* fuzzed frames: valid requests of every API mutated (bytes flipped,
  inserted, deleted, the frame cut short or lengthened, garbage msgpack
  bodies), each sent split at random byte boundaries; plus a hypothesis
  property over generated frames (test below, its own broker);
* lying length prefixes (4 GiB - 1, 2**31 "negative", 100 MiB, and just
  under the frame limit) from 100 connections at once;
* msgpack nested 100,000 deep in a frame of legal size;
* slow-loris clients trickling a request one byte at a time, idle sockets,
  a connection flood past max_connections, and consumers that ask for
  megabytes and never read their fetch responses.

Meanwhile a well-behaved producer (``tailrace bench produce`` in its own
process) runs before and during the attack. The broker must survive and
answer; its RSS (/proc/PID/status) may grow by less than 20 MiB over the
attack; its open descriptors (/proc/PID/fd) must return to the baseline
once the attackers are gone (the broker closes slow-loris, idle and
never-reading connections itself within its timeouts). The well-behaved
client's throughput during the attack over before it is measured and
recorded (tools/reliability.py prints it), not asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable

import msgpack
import trio
from harness import ROOT, BrokerProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_helpers import create_topic
from rel_profile import record_result, size

from tailrace.client import AsyncProducer
from tailrace.client.protocol import (
    APIS,
    ClientConnection,
    FetchPartition,
    FetchRequest,
    FetchTopic,
)

IDLE_MS = 2000
MAX_CONNECTIONS = 400
MiB = 1024 * 1024
ENV = {
    "TAILRACE_LIMITS_CONNECTIONS_MAX_IDLE_MS": str(IDLE_MS),
    "TAILRACE_LIMITS_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
}


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (KiB) and the open descriptor count of a process."""
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def _bench(address: str, seconds: float) -> float:
    """Records/s a well-behaved producer process gets (acks 1, flush none)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tailrace.broker.cli",
            "bench",
            "produce",
            "--bootstrap",
            address,
            "--topic",
            "bench",
            "--duration",
            str(seconds),
            "--record-size",
            "200",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("TAILRACE_")},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["records_per_sec"])


def _valid_frames() -> list[bytes]:
    """One encoded request per API, as a client would send it."""
    codec = ClientConnection()
    frames = []
    for spec in APIS.values():
        try:
            request = spec.request()
        except TypeError:
            continue  # a request type with required fields: covered by fetch below
        _cid, prefix, parts = codec.send_request(request)
        frames.append(bytes(prefix) + b"".join(bytes(p) for p in parts))
    _cid, prefix, parts = codec.send_request(_fetch("t", 0, 1 << 20))
    frames.append(bytes(prefix) + b"".join(bytes(p) for p in parts))
    return frames


def _fetch(topic: str, offset: int, max_bytes: int) -> FetchRequest:
    return FetchRequest(
        max_wait_ms=0,
        min_bytes=1,
        max_bytes=max_bytes,
        topics=[
            FetchTopic(
                name=topic,
                partitions=[FetchPartition(partition=0, fetch_offset=offset, max_bytes=max_bytes)],
            )
        ],
    )


def _mutate(frame: bytes, rng: random.Random) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 2 and data:
            del data[pos : pos + rng.randint(1, 16)]
        elif op == 3:
            data = data[: rng.randint(0, len(data))]
        elif op == 4:  # a body of random msgpack-ish bytes behind a fitting prefix
            body = data[12:] if len(data) > 12 else b""
            body = bytearray(rng.randbytes(rng.randint(0, 64))) + body[: rng.randint(0, 64)]
            data = bytearray(struct.pack(">I", 8 + len(body))) + data[4:12] + body
        else:  # the length prefix lies by a little
            if len(data) >= 4:
                (n,) = struct.unpack_from(">I", data)
                struct.pack_into(">I", data, 0, max(0, n + rng.randint(-8, 8)))
    return bytes(data)


async def _send_split(address: str, data: bytes, rng: random.Random) -> None:
    """Send ``data`` in random pieces, read what comes back, hang up."""
    host, port = address.rsplit(":", 1)
    try:
        stream = await trio.open_tcp_stream(host, int(port))
    except OSError:
        return
    async with stream:
        try:
            pos = 0
            while pos < len(data):
                n = rng.randint(1, max(1, len(data) - pos))
                await stream.send_all(data[pos : pos + n])
                pos += n
                if rng.random() < 0.3:
                    await trio.sleep(0.001)
            with trio.move_on_after(0.2):
                await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _fuzz(address: str, count: int, rng: random.Random) -> None:
    frames = _valid_frames()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            data = _mutate(rng.choice(frames), rng)
            if rng.random() < 0.3:  # several frames back to back, one of them bad
                data = rng.choice(frames) + data + rng.choice(frames)
            nursery.start_soon(_send_split, address, data, random.Random(rng.random()))
            if i % 20 == 19:
                await trio.sleep(0.01)


async def _hold(address: str, payload: bytes, opened: list) -> None:
    host, port = address.rsplit(":", 1)
    try:
        stream = await trio.open_tcp_stream(host, int(port))
    except OSError:
        return
    opened.append(stream)  # closed by the test, whatever happens below
    if payload:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(payload)


async def _slow_loris(address: str, frame: bytes, stop: trio.Event, closed: list) -> None:
    """Trickle a valid request a byte at a time; note if the broker hangs up."""
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        try:
            for byte in frame:
                await stream.send_all(bytes([byte]))
                with trio.move_on_after(0.2):
                    await stop.wait()
                if stop.is_set():
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            closed.append(1)


async def flood(
    address: str, count: int, during: Callable[[], Awaitable[object]] | None = None
) -> int:
    """Open ``count`` connections at once and count those the broker closes
    at once (or refuses); ``during``, if given, runs while they are open
    (a producer connected before keeps being served). Everything is closed
    again at the end."""
    host, port = address.rsplit(":", 1)
    refused = 0
    streams: list[trio.SocketStream] = []

    async def one() -> None:
        nonlocal refused
        try:
            stream = await trio.open_tcp_stream(host, int(port))
        except OSError:
            refused += 1
            return
        streams.append(stream)
        with trio.move_on_after(1.0):
            try:
                if await stream.receive_some(10) == b"":
                    refused += 1
            except trio.BrokenResourceError:
                refused += 1

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    if during is not None:
        await during()
    for stream in streams:
        await stream.aclose()
    return refused


async def _flood(address: str) -> int:
    """Open MAX_CONNECTIONS + 150 connections while a producer connected
    before keeps sending: the excess is closed at once (counted), the
    producer is still served."""
    async with AsyncProducer(address, linger_ms=0) as producer:
        await (await producer.send("t", b"before the flood"))

        async def send_during() -> None:
            await (await producer.send("t", b"during the flood"))

        return await flood(address, MAX_CONNECTIONS + 150, send_during)


async def _sample(pid: int, peak: dict[str, int]) -> None:
    """Keep the highest RSS and descriptor count seen (every 50 ms)."""
    while True:
        for key, value in _status(pid).items():
            peak[key] = max(peak.get(key, 0), value)
        await trio.sleep(0.05)


async def _wait_for_fds(pid: int, baseline: int, timeout: float) -> int:
    """Another process's descriptor count has no event to wait on: look
    every 100 ms until it is back at ``baseline`` or ``timeout`` passed."""
    for _ in range(int(timeout * 10)):
        if _status(pid)["fds"] <= baseline:
            break
        await trio.sleep(0.1)
    return _status(pid)["fds"]


async def test_hostile_clients_do_not_hurt_the_broker_or_other_clients(tmp_path):
    _raise_fd_limit()
    rng = random.Random(11)
    proc = BrokerProcess(tmp_path / "data", env=ENV)
    await trio.to_thread.run_sync(proc.start)
    address = proc.address
    pid = proc.proc.pid
    try:
        await create_topic(address, "t", 1, flush="none")
        # 8 MiB in t for the consumers that never read (and t's files open)
        async with AsyncProducer(address, linger_ms=5) as producer:
            for i in range(2000):
                handle = await producer.send("t", b"%06d" % i + b"x" * 4096)
            await handle
        await trio.to_thread.run_sync(_bench, address, 1.0)  # warm up
        before = await trio.to_thread.run_sync(_bench, address, size(2.0, 10.0))
        base = _status(pid)
        held: list = []
        closed_loris: list = []
        stop = trio.Event()
        fetch_codec = ClientConnection()
        _cid, big_fetch, _ = fetch_codec.send_request(_fetch("t", 0, 64 * MiB))
        loris_frame = _valid_frames()[0]
        during: list[float] = []
        async with trio.open_nursery() as attack:
            attack.start_soon(_fuzz, address, size(400, 4000), rng)
            for prefix in (2**32 - 1, 2**31, 100 * MiB, 16 * MiB - 1):
                for _ in range(25):  # 100 connections
                    attack.start_soon(_hold, address, struct.pack(">I", prefix) + b"\x00" * 8, held)
            nested = b"\x91" * 100_000 + b"\xc0"
            header = struct.pack(">HHI", 3, 0, 99)
            attack.start_soon(
                _hold, address, struct.pack(">I", 8 + len(nested)) + header + nested, held
            )
            for _ in range(size(50, 200)):
                attack.start_soon(_slow_loris, address, loris_frame, stop, closed_loris)
            for _ in range(size(150, 400)):
                attack.start_soon(_hold, address, b"", held)  # idle, then a flood
            for _ in range(10):
                attack.start_soon(_hold, address, bytes(big_fetch) * 3, held)  # never read
            peak: dict[str, int] = {}
            async with trio.open_nursery() as sampling:
                sampling.start_soon(_sample, pid, peak)
                during.append(await trio.to_thread.run_sync(_bench, address, size(2.0, 10.0)))
                sampling.cancel_scope.cancel()
            # the broker closes slow-loris, idle and never-reading connections itself
            await trio.sleep(IDLE_MS / 1000 * 2.5)
            stop.set()
        assert proc.proc.poll() is None, "the broker died"
        for stream in held:
            await stream.aclose()
        refused = await _flood(address)
        assert refused >= 100, f"only {refused} of the connections past the limit were refused"
        fds = await _wait_for_fds(pid, base["fds"], 15)
        after = _status(pid)
    finally:
        proc.kill()
    growth_mib = (after["VmRSS"] - base["VmRSS"]) / 1024
    assert growth_mib < 20, f"RSS grew by {growth_mib:.1f} MiB ({base} -> {after})"
    assert fds <= base["fds"], f"descriptors {base['fds']} before, {fds} after"
    assert closed_loris, "no slow-loris connection was closed by the broker"
    ratio = during[0] / before
    assert ratio > 0
    record_result(
        "hostile clients",
        runs=1,
        faults=size(400, 4000) + 100 + 1 + size(50, 200) + size(150, 400) + 10,
        throughput_before=round(before),
        throughput_during=round(during[0]),
        throughput_ratio=round(ratio, 2),
        rss_growth_mib=round(growth_mib, 1),
        peak_rss_mib=round(peak["VmRSS"] / 1024, 1),
        fds_before=base["fds"],
        fds_peak=peak["fds"],
        fds_after=fds,
        slow_loris_closed=len(closed_loris),
        flood_refused=refused,
        lost=0,
    )


# --- hypothesis: generated frames ----------------------------------------------

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


def test_generated_frames_get_an_error_or_a_close_never_a_crash(tmp_path):
    """Hypothesis frames (known and unknown API keys and versions, bodies of
    arbitrary msgpack), split at generated boundaries, against one broker:
    each gets a response or a hang-up, and the broker keeps answering."""
    proc = BrokerProcess(tmp_path / "data", env=ENV).start()
    try:
        host, port = proc.address.rsplit(":", 1)
        known = sorted(int(k) for k in APIS)

        @settings(
            max_examples=size(150, 3000),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            api_key=st.sampled_from(known) | st.integers(0, 65535),
            version=st.integers(0, 65535),
            body=msgpack_values,
            cuts=st.lists(st.integers(1, 64), max_size=6),
        )
        def frame_is_survived(api_key, version, body, cuts):
            payload = struct.pack(">HHI", api_key, version, 7) + msgpack.packb(body)
            data = struct.pack(">I", len(payload)) + payload
            import socket

            with socket.create_connection((host, int(port)), timeout=5) as sock:
                pos = 0
                for cut in [*cuts, len(data)]:
                    sock.sendall(data[pos : pos + cut])
                    pos += cut
                    if pos >= len(data):
                        break
                reply = sock.recv(65536)  # a response, or b"" when it hung up
                if reply:
                    assert len(reply) >= 12
                    (length,) = struct.unpack_from(">I", reply)
                    assert 8 <= length < 16 * MiB
            assert proc.proc.poll() is None

        frame_is_survived()
        # still serving well-formed clients
        with socket_request(host, int(port)) as ok:
            assert ok
    finally:
        proc.kill()
    record_result(
        "generated frames (hypothesis)", runs=size(150, 3000), faults=size(150, 3000), lost=0
    )


class socket_request:
    """An ApiVersions round trip on a fresh socket: True when answered."""

    def __init__(self, host: str, port: int) -> None:
        import socket

        self.sock = socket.create_connection((host, port), timeout=5)
        codec = ClientConnection()
        _cid, prefix, parts = codec.send_request(APIS[18].request())
        self.sock.sendall(bytes(prefix) + b"".join(bytes(p) for p in parts))

    def __enter__(self) -> bool:
        return len(self.sock.recv(65536)) >= 12

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
