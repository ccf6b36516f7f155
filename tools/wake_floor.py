"""The latency floor of a record's trip when nothing but the wake-ups is done.

A message of 100 bytes carries its scheduled send time from this process,
over loopback TCP, through a relay process (the broker's place), to a
consumer process (the consumer's place), which takes the time when its
application thread has it. No parsing, no storage, no protocol: what is
left is the cost of the processes and threads that must wake up on the way,
on this machine. The chains:

* ``2 wakes``: the relay blocks in ``recv`` and forwards; the consumer's
  only thread blocks in ``recv``. The shape of a C server and a blocking
  client library (Redis and redis-py).
* ``3 wakes``: the same relay; the consumer reads on a thread of its own
  and hands the message to the application thread waiting on a
  ``threading.Condition``: one more thread wake-up per message.
* ``3 wakes, trio``: the relay is a trio loop (``wait_readable`` then
  ``os.read``, ``os.write``); the consumer's reader is a trio loop on a
  background thread that sets a ``threading.Event`` the application thread
  waits on. This is the shape of tailrace's path (broker on trio, a client
  with a trio thread and a blocking ``poll``) with no work done at any hop.
* ``2 wakes, trio relay``: the trio relay, and a consumer whose application
  thread reads the socket itself: what a blocking ``poll`` that reads its
  own responses would leave.

And the same two trio chains **with the path's work**, done with
tailrace's own codec and record format and nothing else (no broker
services, no producer bookkeeping, no metrics): the sender builds each
message as a native record batch (``encode_batch``) in a Produce request
(acks 0: the ack's work is left out) framed by the client's
``ClientConnection``; the relay parses it with ``ServerConnection``, checks
the batch (``validate_batch``: lengths, CRC, record count), sets its base
offset and appends it to a log file, and answers the consumer's parked
long-poll Fetch with a FetchResponse whose records go out by
``os.sendfile`` from that file; the consumer parses the response with
``ClientConnection``, decodes the records (``decode_batches``,
``RecordList``) and reads each record's value, then sends its next Fetch:

* ``2 wakes, trio relay, with the work``: the consumer's application
  thread reads its socket and does all of the consumer's work;
* ``3 wakes, trio, with the work``: the consumer's trio thread reads and
  parses the response and sends the next Fetch; the application thread,
  woken by a ``threading.Event``, decodes.

These give what a Python implementation of the path costs on this machine
when it does only what the path must do.

Sends follow a fixed schedule and latency counts from the scheduled time,
as ``tailrace bench e2e --rate`` does. Every process is started and stopped
through its own handle; every socket is on 127.0.0.1.

    python tools/wake_floor.py --rates 200,2000 --seconds 5
    python tools/wake_floor.py --pieces   # the work's pieces, warm
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque

MSG = 100
STAMP = struct.Struct(">q")  # scheduled send time, time.monotonic_ns(); -1 ends the run


def _listen() -> socket.socket:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(2)
    return srv


def _nodelay(s: socket.socket) -> socket.socket:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _messages(buf: bytearray, data: bytes) -> list[int]:
    """Whole messages' stamps out of ``buf`` (extended by ``data``)."""
    buf += data
    stamps = []
    while len(buf) >= MSG:
        stamps.append(STAMP.unpack_from(buf)[0])
        del buf[:MSG]
    return stamps


async def _read_when_readable(sock: socket.socket) -> bytes:
    """Up to 64 KiB from a non-blocking socket, waiting with trio for
    readability first (b"" at the peer's end of stream)."""
    import trio

    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return os.read(sock.fileno(), 65536)
        except BlockingIOError:
            continue


# --- relay (the broker's place) ----------------------------------------


def relay_blocking(srv: socket.socket) -> None:
    src = _nodelay(srv.accept()[0])
    dst = _nodelay(srv.accept()[0])
    while True:
        data = src.recv(65536)
        if not data:
            return
        dst.sendall(data)


def relay_trio(srv: socket.socket) -> None:
    import trio

    src = _nodelay(srv.accept()[0])
    dst = _nodelay(srv.accept()[0])
    src.setblocking(False)

    async def main() -> None:
        while True:
            data = await _read_when_readable(src)
            if not data:
                return
            dst.sendall(data)  # small, blocking is fine: the peer reads at once

    trio.run(main)


# --- consumer (the consumer's place) -----------------------------------


def consume_direct(sock: socket.socket) -> list[int]:
    buf = bytearray()
    lat: list[int] = []
    while True:
        data = sock.recv(65536)
        now = time.monotonic_ns()
        for stamp in _messages(buf, data):
            if stamp < 0:
                return lat
            lat.append(now - stamp)


def consume_thread(sock: socket.socket) -> list[int]:
    cond = threading.Condition()
    got: deque[int] = deque()

    def reader() -> None:
        buf = bytearray()
        while True:
            data = sock.recv(65536)
            stamps = _messages(buf, data) if data else [-1]
            with cond:
                got.extend(stamps)
                cond.notify()
            if not data or stamps[-1:] == [-1]:
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    lat: list[int] = []
    while True:
        with cond:
            while not got:
                cond.wait()
            now = time.monotonic_ns()
            stamps = list(got)
            got.clear()
        for stamp in stamps:
            if stamp < 0:
                t.join()
                return lat
            lat.append(now - stamp)


def consume_trio(sock: socket.socket) -> list[int]:
    import trio

    ready = threading.Event()
    got: deque[int] = deque()
    sock.setblocking(False)

    async def reader() -> None:
        buf = bytearray()
        while True:
            data = await _read_when_readable(sock)
            stamps = _messages(buf, data) if data else [-1]
            got.extend(stamps)
            ready.set()
            if not data or stamps[-1:] == [-1]:
                return

    t = threading.Thread(target=trio.run, args=(reader,), daemon=True)
    t.start()
    lat: list[int] = []
    while True:
        ready.wait()
        now = time.monotonic_ns()
        ready.clear()
        stamps = []
        while got:
            stamps.append(got.popleft())
        for stamp in stamps:
            if stamp < 0:
                t.join()
                return lat
            lat.append(now - stamp)


# --- the path's work (the "with the work" chains) ----------------------

TOPIC = "floor"
#: fetches long-poll; the relay answers a parked one when a batch arrives
FETCH_WAIT_MS = 5000


def work_sender():
    """A function turning a 100-byte value into the bytes of a Produce
    request carrying it as a one-record native batch."""
    import msgpack

    from tailrace.client.protocol import (
        ClientConnection,
        ProducePartition,
        ProduceRequest,
        ProduceTopic,
    )
    from tailrace.client.records.native import encode_batch

    conn = ClientConnection()
    packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack

    def frame(value: bytes) -> bytes:
        ts = time.time_ns() // 1_000_000
        batch = encode_batch(packb([(0, None, value, None)]), 1, ts, ts)
        request = ProduceRequest(
            acks=0,
            timeout_ms=30_000,
            topics=[
                ProduceTopic(name=TOPIC, partitions=[ProducePartition(partition=0, records=batch)])
            ],
        )
        _, prefix, buffers = conn.send_request(request)
        return b"".join([prefix, *buffers])

    return frame


def _fetch_frame(conn, offset: int) -> bytes:
    from tailrace.client.protocol import FetchPartition, FetchRequest, FetchTopic

    request = FetchRequest(
        max_wait_ms=FETCH_WAIT_MS,
        topics=[
            FetchTopic(name=TOPIC, partitions=[FetchPartition(partition=0, fetch_offset=offset)])
        ],
    )
    _, prefix, buffers = conn.send_request(request)
    return b"".join([prefix, *buffers])


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def _sendfile_all(out_fd: int, in_fd: int, pos: int, length: int) -> None:
    while length:
        try:
            n = os.sendfile(out_fd, in_fd, pos, length)
        except BlockingIOError:
            select.select([], [out_fd], [])
            continue
        pos += n
        length -= n


def _fetch_answer(correlation_id: int, api_version: int, high_watermark: int, length: int) -> bytes:
    """The bytes of a FetchResponse for ``TOPIC`` partition 0 up to its
    records: ``length`` bytes of records follow (by sendfile)."""
    from tailrace.client.protocol import (
        ApiKey,
        FetchPartitionResult,
        FetchResponse,
        FetchTopicResult,
    )
    from tailrace.client.protocol.connection import encode_response
    from tailrace.client.protocol.schema import SendfileSlice

    response = FetchResponse(
        topics=[
            FetchTopicResult(
                name=TOPIC,
                partitions=[
                    FetchPartitionResult(
                        partition=0, high_watermark=high_watermark, records=SendfileSlice(length)
                    )
                ],
            )
        ]
    )
    prefix, _ = encode_response(ApiKey.FETCH, api_version, correlation_id, response)
    return prefix


def relay_trio_work(srv: socket.socket) -> None:
    import tempfile

    src = _nodelay(srv.accept()[0])
    dst = _nodelay(srv.accept()[0])
    for s in (src, dst):
        s.setblocking(False)
    with tempfile.TemporaryFile() as log:
        _relay_work(src, dst, log.fileno())


#: a batch's first field, the base offset the log gives it (header.py)
BASE_OFFSET = struct.Struct(">q")


def _relay_work(src: socket.socket, dst: socket.socket, log_fd: int) -> None:
    import trio

    from tailrace.client.protocol import (
        ProduceRequest,
        Request,
        ServerConnection,
    )
    from tailrace.client.records.batch import validate_batch

    # the base offset and file position of each batch (an offset index);
    # the file's end and the next offset; the consumer's parked fetch and
    # the offset it asks for
    bases: list[int] = []
    positions: list[int] = []
    state = {"end": 0, "next": 0}
    parked: list[tuple[Request, int]] = []

    def answer() -> None:
        request, offset = parked[0]
        i = bisect.bisect_left(bases, offset)
        if i == len(bases):
            return  # nothing at or after the offset yet: stays parked
        pos = positions[i]
        parked.clear()
        length = state["end"] - pos
        prefix = _fetch_answer(request.correlation_id, request.api_version, state["next"], length)
        _write_all(dst.fileno(), prefix)
        _sendfile_all(dst.fileno(), log_fd, pos, length)

    def on_produce(request: Request) -> None:
        assert type(request.body) is ProduceRequest
        for topic in request.body.topics:
            for part in topic.partitions:
                data = bytearray(part.records)
                header = validate_batch(data, max_batch_bytes=1 << 20)
                BASE_OFFSET.pack_into(data, 0, state["next"])
                os.pwrite(log_fd, data, state["end"])
                bases.append(state["next"])
                positions.append(state["end"])
                state["next"] += header.record_count
                state["end"] += len(data)
        if parked:
            answer()

    def on_fetch(request: Request) -> None:
        parked[:] = [(request, request.body.topics[0].partitions[0].fetch_offset)]
        answer()

    async def serve(sock: socket.socket, handle, scope: trio.CancelScope) -> None:
        conn = ServerConnection()
        while True:
            data = await _read_when_readable(sock)
            if not data:
                scope.cancel()  # a peer is gone: the run is over
                return
            conn.receive_data(data)
            while type(event := conn.next_event()) is Request:
                handle(event)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, src, on_produce, nursery.cancel_scope)
            nursery.start_soon(serve, dst, on_fetch, nursery.cancel_scope)

    trio.run(main)


def _decode_stamps(response, offset: int) -> tuple[list[int], int]:
    """The stamps of the records in a FetchResponse, decoded as the consumer
    decodes them; and the offset to fetch next."""
    from tailrace.client.consumer.record import RecordList, decode_batches

    part = response.topics[0].partitions[0]
    parts: list[tuple] = []
    _, offset, _ = decode_batches(TOPIC, 0, memoryview(part.records), offset, parts, 1 << 20)
    return [STAMP.unpack_from(record.value)[0] for record in RecordList(parts)], offset


def consume_direct_work(sock: socket.socket) -> list[int]:
    from tailrace.client.protocol import ClientConnection, Response

    conn = ClientConnection()
    offset = 0
    sock.sendall(_fetch_frame(conn, offset))
    lat: list[int] = []
    while True:
        conn.receive_data(sock.recv(65536))
        while type(event := conn.next_event()) is Response:
            stamps, offset = _decode_stamps(event.body, offset)
            now = time.monotonic_ns()
            for stamp in stamps:
                if stamp < 0:
                    return lat
                lat.append(now - stamp)
            sock.sendall(_fetch_frame(conn, offset))


def consume_trio_work(sock: socket.socket) -> list[int]:
    import trio

    from tailrace.client.protocol import ClientConnection, Response

    ready = threading.Event()
    got: deque = deque()
    sock.setblocking(False)

    async def reader() -> None:
        conn = ClientConnection()
        _write_all(sock.fileno(), _fetch_frame(conn, 0))
        while True:
            data = await _read_when_readable(sock)
            if not data:
                return
            conn.receive_data(data)
            while type(event := conn.next_event()) is Response:
                got.append(event.body)
                ready.set()
                part = event.body.topics[0].partitions[0]
                _write_all(sock.fileno(), _fetch_frame(conn, part.high_watermark))

    t = threading.Thread(target=trio.run, args=(reader,), daemon=True)
    t.start()
    lat: list[int] = []
    offset = 0
    while True:
        ready.wait()
        ready.clear()
        while got:
            stamps, offset = _decode_stamps(got.popleft(), offset)
            now = time.monotonic_ns()
            for stamp in stamps:
                if stamp < 0:
                    return lat
                lat.append(now - stamp)


def time_pieces(repeats: int = 20_000) -> list[tuple[str, float]]:
    """The work chains' pieces of work timed warm, back to back in one
    process (``timeit``): µs per message for each."""
    import timeit

    from tailrace.client.protocol import (
        ClientConnection,
        ServerConnection,
    )
    from tailrace.client.records.batch import validate_batch

    value = STAMP.pack(0) + b"\0" * (MSG - STAMP.size)
    frame = work_sender()
    produce = frame(value)
    server = ServerConnection()

    def parse_produce():
        server.receive_data(produce)
        return server.next_event()

    records = parse_produce().body.topics[0].partitions[0].records

    def check_batch():
        data = bytearray(records)
        validate_batch(data, max_batch_bytes=1 << 20)
        BASE_OFFSET.pack_into(data, 0, 0)

    def fetch_response(correlation_id: int = 0) -> bytes:
        return _fetch_answer(correlation_id, 0, 1, len(records))

    # the consumer's side: answers to requests sent beforehand (their cost
    # is the next piece's), matched in order as the connection requires
    client = ClientConnection()
    for _ in range(repeats + 1):
        _fetch_frame(client, 0)
    answers = iter([fetch_response(i) + bytes(records) for i in range(repeats + 1)])

    def parse_fetch_response():
        client.receive_data(next(answers))
        return client.next_event()

    response = parse_fetch_response().body
    builder = ClientConnection()  # its requests are never answered
    pieces = [
        ("sender: batch and Produce request built", lambda: frame(value)),
        ("relay: Produce request parsed", parse_produce),
        ("relay: batch checked, base offset set", check_batch),
        ("relay: FetchResponse encoded", fetch_response),
        ("consumer: next Fetch request built", lambda: _fetch_frame(builder, 0)),
        ("consumer: FetchResponse parsed", parse_fetch_response),
        ("consumer: records decoded, values read", lambda: _decode_stamps(response, 0)),
    ]
    return [(name, timeit.timeit(fn, number=repeats) / repeats * 1e6) for name, fn in pieces]


# --- the run -------------------------------------------------------------

#: name: (relay kind, consumer kind); the "-work" kinds do the path's work
CHAINS = {
    "2 wakes": ("blocking", "direct"),
    "3 wakes": ("blocking", "thread"),
    "2 wakes, trio relay": ("trio", "direct"),
    "3 wakes, trio": ("trio", "trio"),
    "2 wakes, trio relay, with the work": ("trio-work", "direct-work"),
    "3 wakes, trio, with the work": ("trio-work", "trio-work"),
}


def _child(role: str, kind: str, port: int) -> int:
    if role == "relay":
        srv = _listen()
        sys.stdout.write(f"{srv.getsockname()[1]}\n")
        sys.stdout.flush()
        relay = {"trio": relay_trio, "blocking": relay_blocking, "trio-work": relay_trio_work}
        relay[kind](srv)
        return 0
    sock = _nodelay(socket.create_connection(("127.0.0.1", port)))
    consume = {
        "direct": consume_direct,
        "thread": consume_thread,
        "trio": consume_trio,
        "direct-work": consume_direct_work,
        "trio-work": consume_trio_work,
    }[kind]
    lat = consume(sock)
    sys.stdout.write(json.dumps(lat) + "\n")
    return 0


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)


def run_chain(relay_kind: str, consumer_kind: str, rate: float, seconds: float) -> list[int]:
    relay = _spawn("--child", "relay", relay_kind, "0")
    consumer: subprocess.Popen[str] | None = None
    try:
        assert relay.stdout is not None
        port = int(relay.stdout.readline())
        src = _nodelay(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.1)  # the relay accepts the sender first
        consumer = _spawn("--child", "consumer", consumer_kind, str(port))
        time.sleep(0.5)  # connected and waiting
        pad = b"\0" * (MSG - STAMP.size)
        frame = work_sender() if relay_kind.endswith("-work") else bytes
        gap = int(1e9 / rate)
        start = time.monotonic_ns() + 10_000_000
        n = int(rate * seconds)
        for i in range(n):
            due = start + i * gap
            delay = due - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            src.sendall(frame(STAMP.pack(due) + pad))
        src.sendall(frame(STAMP.pack(-1) + pad))
        assert consumer.stdout is not None
        lat = json.loads(consumer.stdout.readline())
        src.close()
        return lat
    finally:
        for p in (consumer, relay):
            if p is not None:
                p.kill()
                p.wait()


def _pct(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="200,2000", help="messages/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--pieces",
        action="store_true",
        help="instead of the chains, time the work chains' pieces warm, back to back",
    )
    ap.add_argument("--child", nargs=3, metavar=("ROLE", "KIND", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        role, kind, port = args.child
        return _child(role, kind, int(port))
    if args.pieces:
        print("| piece of work, warm | µs per message |")
        print("|---|---|")
        for name, us in time_pieces():
            print(f"| {name} | {us:.1f} |")
        return 0
    print("| chain | rate /s | p50 µs | p90 µs | p99 µs | messages |")
    print("|---|---|---|---|---|---|")
    for rate in (float(r) for r in args.rates.split(",")):
        for name, (relay_kind, consumer_kind) in CHAINS.items():
            lat = sorted(run_chain(relay_kind, consumer_kind, rate, args.seconds))
            print(
                f"| {name} | {rate:,.0f} | {_pct(lat, 0.5):,.0f} | {_pct(lat, 0.9):,.0f} "
                f"| {_pct(lat, 0.99):,.0f} | {len(lat):,} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
