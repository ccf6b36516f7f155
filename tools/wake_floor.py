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

Sends follow a fixed schedule and latency counts from the scheduled time,
as ``tailrace bench e2e --rate`` does. Every process is started and stopped
through its own handle; every socket is on 127.0.0.1.

    python tools/wake_floor.py --rates 200,2000 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
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
            await trio.lowlevel.wait_readable(src)
            try:
                data = os.read(src.fileno(), 65536)
            except BlockingIOError:
                continue
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
            await trio.lowlevel.wait_readable(sock)
            try:
                data = os.read(sock.fileno(), 65536)
            except BlockingIOError:
                continue
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


# --- the run -------------------------------------------------------------

CHAINS = {
    "2 wakes": ("blocking", "direct"),
    "3 wakes": ("blocking", "thread"),
    "2 wakes, trio relay": ("trio", "direct"),
    "3 wakes, trio": ("trio", "trio"),
}


def _child(role: str, kind: str, port: int) -> int:
    if role == "relay":
        srv = _listen()
        sys.stdout.write(f"{srv.getsockname()[1]}\n")
        sys.stdout.flush()
        (relay_trio if kind == "trio" else relay_blocking)(srv)
        return 0
    sock = _nodelay(socket.create_connection(("127.0.0.1", port)))
    consume = {"direct": consume_direct, "thread": consume_thread, "trio": consume_trio}[kind]
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
        gap = int(1e9 / rate)
        start = time.monotonic_ns() + 10_000_000
        n = int(rate * seconds)
        for i in range(n):
            due = start + i * gap
            delay = due - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            src.sendall(STAMP.pack(due) + pad)
        src.sendall(STAMP.pack(-1) + pad)
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
    ap.add_argument("--child", nargs=3, metavar=("ROLE", "KIND", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        role, kind, port = args.child
        return _child(role, kind, int(port))
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
