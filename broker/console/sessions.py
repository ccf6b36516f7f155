"""Console sessions: who the browser is, and the token every change carries.

* A session is a random 256-bit id in a cookie (``HttpOnly``, ``Secure``,
  ``SameSite=Strict``, ``Path=/``), mapped on the server to the principal
  and a CSRF token. Nothing about the user is in the cookie; logging out or
  a broker restart ends it. At most :data:`MAX_SESSIONS` live at once (the
  oldest is dropped), each expires after :data:`IDLE_S` without a request.
* With authentication on (some listener authenticates and a users file is
  set), a session starts at the login form: the password is checked against
  the stored SCRAM credential of the users file (the broker's live
  snapshot, so ``tailrace users add`` applies at once), hashed in a worker
  thread; a failure waits ``security.auth_failure_delay_ms`` like a failed
  SASL exchange and is written to the audit log. Otherwise every browser gets
  an anonymous session (``User:ANONYMOUS``, as an unauthenticated listener's
  clients) that exists only to carry its CSRF token.
* Every POST must carry the session's CSRF token (a form field, compared in
  constant time), and, when the browser sends one, an ``Origin`` equal to
  the console's own; else 403 and nothing changes.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from tailrace.client.security.scram import ScramCredential

from ..security.live_users import LiveUsers

__all__ = [
    "ANONYMOUS",
    "COOKIE",
    "IDLE_S",
    "MAX_SESSIONS",
    "Session",
    "Sessions",
    "check_password",
    "cookie_header",
]

COOKIE = "tailrace_console"
ANONYMOUS = "User:ANONYMOUS"
MAX_SESSIONS = 1000
IDLE_S = 3600.0
#: compared against when the user does not exist, so that the answer takes
#: as long as for a wrong password
_NOBODY = ScramCredential.from_password(secrets.token_urlsafe(16))


@dataclass(slots=True)
class Session:
    sid: str
    principal: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    last_seen: float = 0.0
    #: the user's name when logged in (None: anonymous)
    user: str | None = None

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Sessions:
    """The live sessions of one console, bounded and expiring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > IDLE_S:
            del self._by_id[sid]
            return None
        session.last_seen = now
        self._by_id.move_to_end(sid)
        return session

    def start(self, principal: str, user: str | None = None) -> Session:
        while len(self._by_id) >= MAX_SESSIONS:
            self._evict()
        session = Session(secrets.token_urlsafe(32), principal, user=user)
        session.last_seen = self.clock()
        self._by_id[session.sid] = session
        return session

    def _evict(self) -> None:
        """Drop the least recently used session that nobody logged into
        (so a flood of cookie-less requests cannot log users out), else the
        least recently used one."""
        for sid, session in self._by_id.items():
            if session.user is None:
                del self._by_id[sid]
                return
        self._by_id.popitem(last=False)

    def end(self, sid: str) -> None:
        self._by_id.pop(sid, None)


def check_password(users: LiveUsers, name: str, password: str) -> bool:
    """Whether ``password`` is ``name``'s (against the stored SCRAM
    credential; blocking: run it in a worker thread)."""
    credential = users.current()(name)
    ok = (credential or _NOBODY).verify_password(password)
    return ok and credential is not None


def cookie_header(sid: str, *, secure: bool = True, clear: bool = False) -> str:
    """The ``Set-Cookie`` value for a session id (or one that removes it)."""
    parts = [f"{COOKIE}={'' if clear else sid}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    if clear:
        parts.append("Max-Age=0")
    return "; ".join(parts)
