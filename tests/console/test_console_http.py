"""The console's HTTP edges against a broker process, without a browser:
bounded forms, typed refusals, the live-tail limit, security headers, and
a broker that keeps serving clients through all of it."""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.parse

import pytest
from console_helpers import ConsoleBroker

from tailrace.broker.console.web import MAX_FORM_BYTES, MAX_TAILS, TAIL_BATCH
from tailrace.client import Admin, Producer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    data = tmp_path_factory.mktemp("console-http") / "data"
    with ConsoleBroker(data) as proc:
        with Admin(proc.address) as admin:
            admin.create_topic("t", 1)
        with Producer(proc.address, linger_ms=0) as producer:
            producer.send("t", b"one", partition=0).result(30)
        yield proc


def _connect(broker):
    host, port = broker.console.removeprefix("http://").rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=30)


def _session(broker):
    """(cookie header, csrf token) of a fresh anonymous session."""
    conn = _connect(broker)
    try:
        conn.request("GET", "/topics/t/0")
        r = conn.getresponse()
        page = r.read().decode()
        cookie = r.getheader("Set-Cookie").split(";", 1)[0]
    finally:
        conn.close()
    return cookie, re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def _request(broker, method, path, body=b"", headers=None):
    conn = _connect(broker)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_pages_carry_security_headers(broker):
    status, headers, _ = _request(broker, "GET", "/")
    assert status == 200
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "HttpOnly" in headers["set-cookie"]


def test_refusals_are_typed_pages(broker):
    for path, want in (
        ("/topics/nope", 404),
        ("/topics/t/7", 404),
        ("/topics/t/0?format=html", 400),
        ("/topics/t/0?from=offset&offset=x", 400),
        ("/topics/t/0?from=offset&offset=99", 400),  # past the log end
        ("/topics/t/0/records/5/value", 400),
        ("/topics/t/0/records/0/secret", 404),
        ("/group?id=nobody", 400),
    ):
        status, headers, body = _request(broker, "GET", path)
        assert (path, status) == (path, want)
        assert headers["content-type"].startswith("text/html")
        assert b'id="error"' in body


def test_forms_are_bounded_and_need_their_type(broker):
    cookie, token = _session(broker)
    headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    # a declared length over the bound is refused before the body is read
    host, port = broker.console.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST /topics/t/0/produce HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {MAX_FORM_BYTES + 1}\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    small = urllib.parse.urlencode({"csrf": token, "value": "y"}).encode()
    status, _, _ = _request(
        broker, "POST", "/topics/t/0/produce", small, {**headers, "Content-Type": "text/plain"}
    )
    assert status == 415
    status, _, _ = _request(broker, "POST", "/topics/t/0/produce", small, headers)
    assert status == 303  # the same session, a proper form: written
    with Producer(broker.address, linger_ms=0) as producer:  # the broker still serves
        assert producer.send("t", b"after", partition=0).result(30).offset == 2


def test_live_tails_are_limited(broker):
    conns = []
    try:
        for _ in range(MAX_TAILS):
            conn = _connect(broker)
            conn.request("GET", "/topics/t/0/tail?offset=0")
            r = conn.getresponse()
            assert r.status == 200
            assert r.getheader("Content-Type").startswith("text/event-stream")
            assert r.readline() == b"retry: 2000\n"
            conns.append((conn, r))
        status, _, body = _request(broker, "GET", "/topics/t/0/tail?offset=0")
        assert status == 503
        assert f"at most {MAX_TAILS} live tails".encode() in body
        # a stream delivers the records from its offset
        _, first = conns[0]
        lines = [first.readline() for _ in range(4)]
        assert lines[0] == b"\n"
        assert lines[1].startswith(b"id: ")  # the next offset: where a reconnect resumes
        assert lines[2] == b"event: records\n"
        assert b'"value": "one"' in lines[3]
    finally:
        for conn, _ in conns:
            conn.close()
    # closed tails are given back
    for _ in range(50):
        status, _, _ = _request(broker, "GET", "/topics/t/0?from=end")
        conn = _connect(broker)
        conn.request("GET", "/topics/t/0/tail")
        r = conn.getresponse()
        conn.close()
        if r.status == 200:
            break
    assert r.status == 200


def test_a_tail_far_behind_jumps_to_the_newest_records(broker):
    with Admin(broker.address) as admin:
        admin.create_topic("busy", 1)
    with Producer(broker.address, linger_ms=0) as producer:
        for i in range(TAIL_BATCH * 3):
            producer.send("busy", str(i).encode(), partition=0)
        producer.flush()
    conn = _connect(broker)
    try:
        conn.request("GET", "/topics/busy/0/tail?offset=0")
        r = conn.getresponse()
        lines = [r.readline() for _ in range(10)]
    finally:
        conn.close()
    assert lines[:6] == [
        b"retry: 2000\n",
        b"\n",
        f"id: {TAIL_BATCH * 2}\n".encode(),
        b"event: skipped\n",
        f"data: {TAIL_BATCH * 2}\n".encode(),
        b"\n",
    ]
    assert lines[6:8] == [f"id: {TAIL_BATCH * 3}\n".encode(), b"event: records\n"]
    records = json.loads(lines[8].removeprefix(b"data: "))
    assert [r["offset"] for r in records] == list(range(TAIL_BATCH * 2, TAIL_BATCH * 3))
    assert records[-1]["value"] == str(TAIL_BATCH * 3 - 1)
    # a reconnecting EventSource resumes after the last event it saw
    last = TAIL_BATCH * 3
    conn = _connect(broker)
    try:
        conn.request(
            "GET", "/topics/busy/0/tail?offset=0", headers={"Last-Event-ID": str(last - 2)}
        )
        r = conn.getresponse()
        lines = [r.readline() for _ in range(5)]
    finally:
        conn.close()
    assert lines[2:4] == [f"id: {TAIL_BATCH * 3}\n".encode(), b"event: records\n"]
    assert [r["offset"] for r in json.loads(lines[4].removeprefix(b"data: "))] == [
        last - 2,
        last - 1,
    ]


def test_a_tail_and_a_page_read_from_the_middle_of_one_large_batch(broker):
    # one batch of 200 records: the tail starts 20 from its end and a page
    # at an offset inside it, and each decodes only the records it shows
    with Admin(broker.address) as admin:
        admin.create_topic("wide", 1)
    with Producer(broker.address, linger_ms=60_000) as producer:
        for i in range(200):
            producer.send("wide", f"v{i}".encode(), key=f"k{i}".encode(), partition=0,
                          headers=[("n", str(i).encode())])  # fmt: skip
        producer.flush()
    conn = _connect(broker)
    try:
        conn.request("GET", "/topics/wide/0/tail?offset=0")
        r = conn.getresponse()
        lines = [r.readline() for _ in range(9)]
    finally:
        conn.close()
    assert lines[2:5] == [b"id: 180\n", b"event: skipped\n", b"data: 180\n"]
    assert lines[6:8] == [b"id: 200\n", b"event: records\n"]
    records = json.loads(lines[8].removeprefix(b"data: "))
    assert [(r["offset"], r["key"], r["value"], r["headers"]) for r in records] == [
        (i, f"k{i}", f"v{i}", [["n", str(i)]]) for i in range(180, 200)
    ]
    status, _, page = _request(broker, "GET", "/topics/wide/0?from=offset&offset=37&limit=3")
    assert status == 200
    assert re.findall(rb'<tr data-offset="(\d+)">', page) == [b"37", b"38", b"39"]
    assert b"v37" in page
    assert b"v40" not in page
