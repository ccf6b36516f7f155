"""Run inside a private network namespace by test_netns.py: four nodes on
127.0.0.2-5, each listening and each connecting from its own address, under
the partitions of broker/faultkit/netns.py. Prints one JSON object: for each
step, which (source, destination) connections succeeded."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading

from tailrace.broker.faultkit.netns import NetFaults, bring_up_loopback, in_private_namespace

NODES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


def echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(1024):
            conn.sendall(data)


def serve(listener: socket.socket) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def reach(src: str, dst: str, port: int) -> bool:
    """A new connection from src to dst answers an echo within 0.5 s."""
    with socket.socket() as s:
        s.bind((src, 0))
        s.settimeout(0.5)
        try:
            s.connect((dst, port))
            s.sendall(b"ping")
            return s.recv(4) == b"ping"
        except OSError:
            return False


def matrix(port: int) -> list[list[str]]:
    return [[a, b] for a in NODES for b in NODES if a != b and reach(a, b, port)]


def main() -> int:
    assert in_private_namespace()
    bring_up_loopback()
    port = int(sys.argv[1])
    listeners = []
    for node in NODES:
        ls = socket.socket()
        ls.bind((node, port))
        ls.listen()
        listeners.append(ls)
        threading.Thread(target=serve, args=(ls,), daemon=True).start()
    out: dict[str, object] = {"pid_netns": os.readlink("/proc/self/ns/net")}
    # an established connection across the coming partition
    held = socket.socket()
    held.bind((NODES[0], 0))
    held.connect((NODES[1], port))
    held.settimeout(0.5)
    net = NetFaults()
    out["open"] = matrix(port)
    net.partition(NODES[0], NODES[1])
    out["partition"] = matrix(port)
    held.sendall(b"held")
    try:
        out["held_during"] = held.recv(4).decode()
    except TimeoutError:
        out["held_during"] = "timeout"
    net.heal()
    net.split(NODES[:2], NODES[2:])
    out["split"] = matrix(port)
    net.heal()
    net.isolate(NODES[3], NODES[:3])
    out["isolate"] = matrix(port)
    out["cuts"] = sorted(map(list, net.cuts))
    net.heal()
    out["healed"] = matrix(port)
    held.settimeout(10)
    out["held_after"] = held.recv(4).decode()  # retransmitted once healed
    held.close()
    for ls in listeners:
        ls.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
