"""The console in a real browser (headless Chromium) against a broker
process holding real data: every page opens, a live tail follows a
producer, a topic setting is edited, a group's offsets are reset, and
hostile records (markup, invalid UTF-8, 8 MiB) are shown as text."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest
from console_helpers import ConsoleBroker, text_of, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tailrace.client import Admin, Consumer, Producer, TopicPartition

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
ORDERS = 30
#: the largest value a producer may send (a batch is at most 8 MiB)
BIG = 8 * MiB - 256


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    data = tmp_path_factory.mktemp("console") / "data"
    with ConsoleBroker(data, "--metrics", "127.0.0.1:0") as proc:
        with Admin(proc.address) as admin:
            admin.create_topic("orders", 3)
            admin.create_topic("hostile", 1)
        with Producer(proc.address, linger_ms=0) as producer:
            for i in range(ORDERS):
                value = json.dumps({"order": i, "amount": i * 10}).encode()
                producer.send(
                    "orders", value, key=f"customer-{i % 4}".encode(), partition=i % 3,
                    headers=[("source", b"checkout")],
                )  # fmt: skip
            producer.send("hostile", SCRIPT.encode(), key=b"<b>key</b>", partition=0)
            producer.send("hostile", b"\xff\xfe not utf-8 \x00\x1b[31m", partition=0)
            producer.send("hostile", b"A" * BIG, partition=0)
            producer.flush()
        yield proc


def _get(browser, broker, path):
    browser.get(broker.console + path)
    assert "tailrace console" in browser.title


def test_overview_shows_topics_partitions_and_rates(browser, broker, shots):
    _get(browser, broker, "/")
    assert text_of(browser, "#topic-count") == "2"
    assert text_of(browser, "#partition-count") == "4"
    assert text_of(browser, "#offline") == "0"
    rows = browser.find_elements(By.CSS_SELECTOR, "#topics tbody tr")
    names = [r.find_element(By.TAG_NAME, "a").text for r in rows]
    assert names == ["hostile", "orders"]
    assert "MiB" in text_of(browser, "#disk-logs")  # the 8 MiB record is on disk
    # the live cards poll the broker's own metrics
    wait_for(
        lambda: text_of(browser, ".card[data-metric=requests] .big") not in ("", "\u2013"),
        what="a requests-per-second figure",
    )
    shots.take(browser, "overview")


def test_topic_page_lists_partitions_and_settings(browser, broker, shots):
    _get(browser, broker, "/topics/orders")
    rows = browser.find_elements(By.CSS_SELECTOR, "#partitions tbody tr")
    assert len(rows) == 3
    hws = [int(r.find_element(By.CSS_SELECTOR, ".hw").text) for r in rows]
    assert sum(hws) >= ORDERS
    assert text_of(browser, "#setting-flush .value") == "sync"
    shots.take(browser, "topic")


def test_messages_are_browsed_from_an_offset_in_each_format(browser, broker, shots):
    _get(browser, broker, "/topics/orders/0?from=offset&offset=0&limit=5")
    rows = browser.find_elements(By.CSS_SELECTOR, "#records tbody tr")
    assert [r.get_attribute("data-offset") for r in rows] == ["0", "1", "2", "3", "4"]
    assert json.loads(rows[0].find_element(By.CSS_SELECTOR, "pre.value").text) == {
        "order": 0,
        "amount": 0,
    }
    assert "source" in rows[0].text
    assert "checkout" in rows[0].text
    Select(browser.find_element(By.ID, "format")).select_by_visible_text("json")
    browser.find_element(By.CSS_SELECTOR, "#browse button[type=submit]").click()
    wait_for(lambda: "format=json" in browser.current_url, what="the json view")
    first = browser.find_element(By.CSS_SELECTOR, "#records tbody tr pre.value").text
    assert first.startswith("{\n")  # pretty-printed
    shots.take(browser, "messages")
    _get(browser, broker, "/topics/orders/0?from=offset&offset=0&limit=1&format=hex")
    hexed = browser.find_element(By.CSS_SELECTOR, "#records pre.value").text
    assert hexed.startswith("00000000  7b 22 6f 72 64 65 72 22")  # {"order"


def test_browse_from_the_end_and_from_a_time(browser, broker):
    _get(browser, broker, "/topics/orders/1?from=end&limit=3")
    offsets = [
        int(r.get_attribute("data-offset"))
        for r in browser.find_elements(By.CSS_SELECTOR, "#records tbody tr")
    ]
    hw = int(text_of(browser, "#hw"))
    assert offsets == [hw - 3, hw - 2, hw - 1]
    _get(browser, broker, "/topics/orders/1?from=time&time=0&limit=2")
    first = browser.find_element(By.CSS_SELECTOR, "#records tbody tr").get_attribute("data-offset")
    assert first == "0"


def test_hostile_records_are_shown_as_text(browser, broker, shots):
    _get(browser, broker, "/topics/hostile/0?from=offset&offset=0&limit=3")
    rows = browser.find_elements(By.CSS_SELECTOR, "#records tbody tr")
    assert len(rows) == 3
    # markup is text: the characters are on the page, nothing was parsed or run
    assert rows[0].find_element(By.CSS_SELECTOR, "pre.value").text == SCRIPT
    assert rows[0].find_elements(By.CSS_SELECTOR, "script, img, b") == []
    assert browser.execute_script("return window.__pwned") is None
    # invalid UTF-8 and control characters are shown escaped
    assert rows[1].find_element(By.CSS_SELECTOR, "pre.value").text == (
        "\\xff\\xfe not utf-8 \\x00\\x1b[31m"
    )
    # 8 MiB: a prefix is shown, with a link to the whole value
    big = rows[2].find_element(By.CSS_SELECTOR, "pre.value").text
    assert big == "A" * 4096
    link = rows[2].find_element(By.CSS_SELECTOR, "a.more")
    assert "8.0 MiB" in link.text
    shots.take(browser, "hostile-records")
    with urllib.request.urlopen(link.get_attribute("href"), timeout=60) as r:
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["Content-Disposition"].startswith("attachment;")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        body = r.read()
    assert body == b"A" * BIG


def test_live_tail_follows_a_producer(browser, broker, shots):
    _get(browser, broker, "/topics/orders/2?from=end&limit=3")
    start = int(text_of(browser, "#hw"))
    browser.find_element(By.ID, "tail-toggle").click()
    wait_for(lambda: "following" in text_of(browser, "#tail-state"), what="the tail to open")

    done = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with Producer(broker.address, linger_ms=0) as producer:
                for i in range(10):
                    value = (SCRIPT if i == 5 else f"live {i}").encode()
                    producer.send("orders", value, key=b"tail", partition=2).result(30)
                    done.wait(0.05)
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)

    writer = threading.Thread(target=produce)
    writer.start()
    try:
        wait_for(
            lambda: browser.find_elements(By.CSS_SELECTOR, f"tr[data-offset='{start + 9}']"),
            what="the tenth live record",
        )
    finally:
        done.set()
        writer.join(60)
    assert not errors
    live = {
        int(r.get_attribute("data-offset")): r.find_element(By.CSS_SELECTOR, "pre.value").text
        for r in browser.find_elements(By.CSS_SELECTOR, "#records tbody tr")
        if int(r.get_attribute("data-offset")) >= start
    }
    assert live[start] == "live 0"
    assert live[start + 5] == SCRIPT  # text, also on the script path
    assert browser.execute_script("return window.__pwned") is None
    assert sorted(live) == list(range(start, start + 10))
    shots.take(browser, "live-tail")
    browser.find_element(By.ID, "tail-toggle").click()
    assert text_of(browser, "#tail-state") == "stopped"


def test_produce_a_test_record(browser, broker):
    _get(browser, broker, "/topics/hostile/0?from=end&limit=1")
    browser.find_element(By.ID, "produce-key").send_keys("k-test")
    browser.find_element(By.ID, "produce-value").send_keys('{"hello": "console"}')
    browser.find_element(By.NAME, "headers").send_keys("trace: abc")
    browser.find_element(By.CSS_SELECTOR, "#produce button").click()
    produced = wait_for(
        lambda: browser.find_elements(By.ID, "produced"), what="the produced notice"
    )[0]
    offset = int(produced.text.split()[-1].rstrip("."))
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-offset='{offset}']")
    assert row.find_element(By.CSS_SELECTOR, "pre.value").text == '{"hello": "console"}'
    assert "trace" in row.text
    assert "abc" in row.text
    with Consumer(broker.address) as consumer:
        tp = TopicPartition("hostile", 0)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        records = wait_for(lambda: list(consumer.poll(1000)), what="the record by a client")
    assert (records[0].key, records[0].value) == (b"k-test", b'{"hello": "console"}')


def test_edit_a_topic_setting(browser, broker, shots):
    _get(browser, broker, "/topics/orders")
    row = browser.find_element(By.ID, "setting-retention_ms")
    field = row.find_element(By.NAME, "value")
    field.clear()
    field.send_keys("3600000")
    row.find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: browser.find_elements(By.ID, "changed"), what="the change notice")
    row = browser.find_element(By.ID, "setting-retention_ms")
    assert row.find_element(By.CSS_SELECTOR, ".value").text == "3600000"
    assert "topic" in row.text
    shots.take(browser, "topic-settings")
    with Admin(broker.address) as admin:
        assert str(admin.describe_configs("orders")["retention_ms"].value) == "3600000"


def test_group_page_and_offset_reset(browser, broker, shots):
    consumer = Consumer(broker.address, group_id="billing", auto_offset_reset="earliest")
    try:
        consumer.subscribe(["orders"])
        seen = 0
        while seen < ORDERS:
            seen += len(consumer.poll(1000))
        consumer.commit()
        _get(browser, broker, "/groups")
        assert "billing" in text_of(browser, "#groups")
        _get(browser, broker, "/group?id=billing")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#members tbody tr code")) == 1
        assert len(browser.find_elements(By.CSS_SELECTOR, "#offsets tbody tr")) == 3
        wait_for(  # the lag chart polls; give it two points
            lambda: (
                browser.execute_script(
                    "return document.getElementById('lag-chart').toDataURL().length"
                )
                > 3000
            ),
            what="the lag chart",
        )
        shots.take(browser, "group")
    finally:
        consumer.close()
    wait_for(
        lambda: _get(browser, broker, "/group?id=billing") or text_of(browser, "#state") == "Empty",
        what="the group to be empty",
    )
    Select(browser.find_element(By.ID, "reset-topic")).select_by_visible_text("orders")
    Select(browser.find_element(By.ID, "reset-to")).select_by_value("earliest")
    browser.find_element(By.CSS_SELECTOR, "#reset button").click()
    confirm = wait_for(lambda: browser.find_elements(By.ID, "confirm-reset"), what="confirm")[0]
    assert "Confirm" in confirm.text
    shots.take(browser, "group-reset-confirm")
    # nothing changed before the confirmation
    with Consumer(broker.address, group_id="billing") as check:
        before = check.committed(TopicPartition("orders", 0))
    assert before is not None
    assert before.offset > 0
    browser.find_element(By.ID, "confirm").click()
    wait_for(lambda: browser.find_elements(By.ID, "reset-done"), what="the reset notice")
    committed = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#offsets .committed")]
    assert committed == ["0", "0", "0"]
    total = int(text_of(browser, "#total-lag"))
    assert total >= ORDERS
    with Consumer(broker.address, group_id="billing") as check:
        for p in range(3):
            assert check.committed(TopicPartition("orders", p)).offset == 0


def test_charts_draw_produce_and_fetch_rates(browser, broker, shots):
    _get(browser, broker, "/charts")
    stop = threading.Event()

    def load() -> None:
        with Producer(broker.address, linger_ms=0) as producer:
            while not stop.is_set():
                producer.send("orders", b"chart", partition=1).result(30)

    writer = threading.Thread(target=load)
    writer.start()
    try:
        point = wait_for(
            lambda: (
                int(browser.find_element(By.ID, "charts").get_attribute("data-points") or 0) >= 4
                and _last_point(browser, "produce_rps")
            ),
            what="four points and a produce rate on the charts",
        )
    finally:
        stop.set()
        writer.join(60)
    assert point["produce_rps"] > 0
    assert point["produce_p50_ms"] is not None
    shots.take(browser, "charts")


def _last_point(browser, key):
    text = text_of(browser, "#last-point")
    if not text.startswith("{"):
        return None
    point = json.loads(text)
    return point if point.get(key) else None
