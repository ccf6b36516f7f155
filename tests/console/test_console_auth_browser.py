"""The console of a broker with authentication and ACLs: logging in with a
SCRAM user of the users file, actions refused by the same ACLs a client
meets, secure session cookies, and changes that need the CSRF token."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
from console_helpers import ConsoleBroker, text_of, wait_for
from selenium.webdriver.common.by import By

from tailrace.broker.security.acl import AclBinding, AclStore
from tailrace.broker.security.users import add_user
from tailrace.client import Admin, Producer

pytestmark = pytest.mark.slow

PASSWORDS = {"admin": "admin pass", "bob": "bob pass"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    root = tmp_path_factory.mktemp("console-auth")
    users = root / "users.json"
    for name, password in PASSWORDS.items():
        add_user(users, name, password, iterations=4096)
    data = root / "data"
    data.mkdir()
    # bob may read orders (and so describe it), nothing else
    AclStore.open(data / "~acls.json").add(
        [AclBinding("User:bob", "read", "topic", "orders")]
    )  # fmt: skip
    config = root / "broker.toml"
    # "local" (no authentication) is how the test writes its data; its
    # anonymous clients are super users here, the console's users are not
    config.write_text(
        '[[listeners]]\nname = "local"\naddress = "127.0.0.1:0"\n'
        '[[listeners]]\nname = "sasl"\naddress = "127.0.0.1:0"\nauthentication = "sasl"\n'
        f'[security]\nusers_file = "{users}"\nsuper_users = "User:admin;User:ANONYMOUS"\n'
        "auth_failure_delay_ms = 0\n"
    )
    with ConsoleBroker(data, "--config", str(config), listen=None) as proc:
        with Admin(proc.address) as admin:
            admin.create_topic("orders", 1)
            admin.create_topic("secret", 1)
        with Producer(proc.address, linger_ms=0) as producer:
            producer.send("orders", b"visible to bob", partition=0)
            producer.send("secret", b"not for bob", partition=0)
            producer.flush()
        yield proc


def _login(browser, broker, name, password):
    browser.delete_all_cookies()
    browser.get(broker.console + "/")
    assert browser.current_url.endswith("/login")  # nothing without a login
    browser.find_element(By.ID, "username").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#error, #topic-count"),
        what="the login's answer",
    )


def test_a_wrong_password_is_refused(browser, broker, shots):
    _login(browser, broker, "bob", "not bob's password")
    assert text_of(browser, "#error") == "wrong user name or password"
    assert browser.current_url.endswith("/login")
    shots.take(browser, "login")
    _login(browser, broker, "mallory", "any")
    assert text_of(browser, "#error") == "wrong user name or password"
    assert any("event=auth_failure" in line and "mallory" in line for line in broker.log_lines)


def test_session_cookie_is_http_only_secure_and_same_site(browser, broker):
    _login(browser, broker, "bob", PASSWORDS["bob"])
    wait_for(lambda: browser.find_elements(By.ID, "topic-count"), what="the overview")
    (cookie,) = browser.get_cookies()
    assert cookie["name"] == "tailrace_console"
    assert cookie["httpOnly"] is True
    assert cookie["secure"] is True
    assert cookie["sameSite"] == "Strict"


def test_a_user_sees_and_does_only_what_the_acls_allow(browser, broker, shots):
    _login(browser, broker, "bob", PASSWORDS["bob"])
    wait_for(lambda: browser.find_elements(By.ID, "topic-count"), what="the overview")
    assert "User:bob" in text_of(browser, "header .who")
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#topics tbody a")]
    assert names == ["orders"]  # secret is hidden, as in Metadata
    browser.get(broker.console + "/topics/secret")
    assert text_of(browser, "#error") == "User:bob may not describe topic 'secret'"
    # read: allowed; alter: not offered; write: refused by the broker
    browser.get(broker.console + "/topics/orders")
    assert browser.find_elements(By.ID, "read-only")
    assert browser.find_elements(By.CSS_SELECTOR, "#settings button") == []
    browser.get(broker.console + "/topics/orders/0?from=offset&offset=0")
    assert text_of(browser, "#records pre.value") == "visible to bob"
    hw = text_of(browser, "#hw")
    browser.find_element(By.ID, "produce-value").send_keys("bob was here")
    browser.find_element(By.CSS_SELECTOR, "#produce button").click()
    error = wait_for(lambda: browser.find_elements(By.ID, "error"), what="the refusal")[0]
    assert error.get_attribute("data-status") == "403"
    assert error.text == "User:bob may not write to 'orders'"  # the produce service's words
    shots.take(browser, "refused")
    assert any(
        "event=authz_denied" in line and "User:bob" in line and "write" in line
        for line in broker.log_lines
    )
    browser.get(broker.console + "/topics/orders/0?from=offset&offset=0")
    assert text_of(browser, "#hw") == hw  # nothing was written


def test_a_user_allowed_to_alter_edits_a_setting(browser, broker):
    _login(browser, broker, "admin", PASSWORDS["admin"])
    browser.get(broker.console + "/topics/orders")
    row = browser.find_element(By.ID, "setting-segment_ms")
    field = row.find_element(By.NAME, "value")
    field.clear()
    field.send_keys("600000")
    row.find_element(By.TAG_NAME, "button").click()
    wait_for(lambda: browser.find_elements(By.ID, "changed"), what="the change notice")
    value = browser.find_element(By.CSS_SELECTOR, "#setting-segment_ms .value").text
    assert value == "600000"
    browser.find_element(By.ID, "logout").click()
    wait_for(lambda: browser.current_url.endswith("/login"), what="the login page")
    browser.get(broker.console + "/topics/orders")
    assert browser.current_url.endswith("/login")  # the session ended


def _session(broker, name):
    """A logged-in HTTP client without a browser: (opener, csrf token)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(broker.console + "/login", timeout=30) as r:
        token = re.search(r'name="csrf" value="([^"]+)"', r.read().decode()).group(1)
    # the Secure cookie is not sent back over http by urllib: carry it by hand
    cookie = next(c for c in jar if c.name == "tailrace_console")
    opener.addheaders = [("Cookie", f"tailrace_console={cookie.value}")]
    body = urllib.parse.urlencode(
        {"csrf": token, "username": name, "password": PASSWORDS[name]}
    ).encode()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kw):
            return None

    plain = urllib.request.build_opener(NoRedirect)
    plain.addheaders = opener.addheaders
    with pytest.raises(urllib.error.HTTPError) as answer:
        plain.open(broker.console + "/login", body, timeout=30)
    assert answer.value.code == 303
    cookie_header = answer.value.headers["Set-Cookie"]
    answer.value.close()
    fresh = re.search(r"tailrace_console=([^;]+)", cookie_header).group(1)
    plain.addheaders = [("Cookie", f"tailrace_console={fresh}")]
    with plain.open(broker.console + "/topics/orders", timeout=30) as r:
        token = re.search(r'name="csrf" value="([^"]+)"', r.read().decode()).group(1)
    return plain, token


def _post(opener, url, fields, headers=()):
    request = urllib.request.Request(url, urllib.parse.urlencode(fields).encode())
    for name, value in headers:
        request.add_header(name, value)
    try:
        with opener.open(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_changes_need_the_csrf_token_and_the_consoles_origin(broker):
    opener, token = _session(broker, "admin")
    url = broker.console + "/topics/orders/config"
    change = {"key": "retention_ms", "value": "1234567"}
    status, page = _post(opener, url, change)
    assert status == 403
    assert "CSRF token is missing or wrong" in page
    status, page = _post(opener, url, {**change, "csrf": token + "x"})
    assert status == 403
    status, page = _post(opener, url, {**change, "csrf": token}, [("Origin", "http://evil")])
    assert (status, "Origin" in page) == (403, True)
    with Admin(broker.address) as admin:
        assert str(admin.describe_configs("orders")["retention_ms"].value) != "1234567"
    status, _ = _post(opener, url, {**change, "csrf": token})
    assert status == 303  # the same request with the token: done
    with Admin(broker.address) as admin:
        assert str(admin.describe_configs("orders")["retention_ms"].value) == "1234567"
