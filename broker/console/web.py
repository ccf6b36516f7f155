"""The console's pages: a Starlette application over :class:`~.adapter.Core`.

Server-rendered HTML (Jinja2, autoescape on: every record byte reaches the
page as escaped text), one stylesheet and one script served from the
package (no build step, nothing fetched at run time), and a Content
Security Policy that allows scripts and styles from the console only, so a
record that slipped past escaping still could not run.

Every route goes through :meth:`Console.page`, which finds the session,
sends a browser that must log in to the login form, checks the CSRF token
(and ``Origin``) of every POST, reads form bodies bounded
(:data:`MAX_FORM_BYTES`), turns a broker error into a page with the
client's status (403 for an ACL denial) and adds the security headers.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tailrace.client.errors import (
    AuthorizationError,
    BrokerError,
    UnknownTopicOrPartitionError,
)

from ..logs import log_event
from ..security import audit
from .adapter import MAX_RECORDS, Core, Record, session_info
from .rates import RateSeries
from .render import FORMATS, show
from .sessions import ANONYMOUS, COOKIE, Session, Sessions, check_password, cookie_header

if TYPE_CHECKING:
    from ..app import Broker

__all__ = ["MAX_FORM_BYTES", "MAX_TAILS", "Console"]

log = logging.getLogger("tailrace.console")

MAX_FORM_BYTES = 1024 * 1024
#: live tails (server-sent event streams) open at once, over all sessions
MAX_TAILS = 8
#: a tail sends at most this often, and at most TAIL_BATCH records at a time
TAIL_INTERVAL_S = 1.0
TAIL_BATCH = 20
#: bytes a tail reads per send (plus at most one larger batch)
TAIL_READ_BYTES = 64 * 1024
TAIL_KEEPALIVE_S = 15.0
#: groups whose lag history is kept, points per group
LAG_GROUPS = 200
LAG_POINTS = 300

_HERE = Path(__file__).parent
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin: a form POST carries the Origin checked below ("no-referrer"
    # would make it "null")
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class FormError(Exception):
    """A request the console refuses before anything happens (status, reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Handler = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]


def _status_of(exc: BrokerError) -> int:
    if isinstance(exc, AuthorizationError):
        return 403
    if isinstance(exc, UnknownTopicOrPartitionError):
        return 404
    return 400


def _int(value: str | None, default: int, what: str) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise FormError(400, f"{what} must be an integer, got {value[:40]!r}") from None


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _time(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class _TailStream(StreamingResponse):
    """A live tail's event stream, counted in ``console.tails`` from its
    creation until the response ends (however it ends: the generator of a
    client that left before the first event never runs at all)."""

    def __init__(self, console: Console, events: AsyncIterator[str]) -> None:
        super().__init__(events, media_type="text/event-stream")
        self.console = console
        console.tails += 1

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.console.tails -= 1


class Console:
    """The console of one broker: its sessions, pages and live streams."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.core = Core(broker)
        self.sessions = Sessions()
        self.rates = RateSeries()
        self.users = broker.security.users
        #: a login is required when some listener authenticates its clients
        self.login_required = self.users is not None and broker.config.authenticates
        self.failure_delay = broker.config.values["security.auth_failure_delay_ms"] / 1000
        self.tails = 0
        self.lag: OrderedDict[str, deque[tuple[int, int]]] = OrderedDict()
        self._lag_at: dict[str, float] = {}
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["bytes"] = _human_bytes
        self.templates.filters["time"] = _time
        self.app = Starlette(routes=self._routes())

    # -------------------------------------------------------------- routing

    def _routes(self) -> list[Any]:
        p = self.page
        return [
            Route("/", p(self.overview)),
            Route("/login", p(self.login_form, public=True)),
            Route("/login", p(self.login, public=True), methods=["POST"]),
            Route("/logout", p(self.logout), methods=["POST"]),
            Route("/topics/{topic}", p(self.topic)),
            Route("/topics/{topic}/config", p(self.alter_config), methods=["POST"]),
            Route("/topics/{topic}/{partition:int}", p(self.messages)),
            Route("/topics/{topic}/{partition:int}/produce", p(self.produce), methods=["POST"]),
            Route("/topics/{topic}/{partition:int}/tail", p(self.tail)),
            Route("/topics/{topic}/{partition:int}/records/{offset:int}/{part}", p(self.download)),
            Route("/groups", p(self.groups)),
            Route("/group", p(self.group)),
            Route("/group/reset", p(self.reset), methods=["POST"]),
            Route("/group/lag", p(self.group_lag)),
            Route("/charts", p(self.charts)),
            Route("/api/metrics", p(self.metrics_json)),
            Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        ]

    def page(
        self, fn: Handler, *, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            sid = request.cookies.get(COOKIE)
            session = self.sessions.get(sid)
            fresh = session is None
            if session is None:
                session = self.sessions.start("" if self.login_required else ANONYMOUS)
            try:
                if self.login_required and session.user is None and not public:
                    response: Response = RedirectResponse("/login", status_code=303)
                else:
                    form: dict[str, str] = {}
                    if request.method == "POST":
                        form = await self._form(request, session)
                    response = await fn(request, session, form)
            except FormError as exc:
                response = self._error(session, exc.status, exc.reason)
            except BrokerError as exc:
                response = self._error(session, _status_of(exc), exc.message)
            if fresh:
                response.headers.append("Set-Cookie", cookie_header(session.sid))
            for name, value in _SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return endpoint

    async def _form(self, request: Request, session: Session) -> dict[str, str]:
        """The POST's fields, bounded, after the CSRF and Origin checks."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise FormError(403, "cross-site request refused (Origin is not the console's)")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
            raise FormError(413, f"a form may carry at most {MAX_FORM_BYTES} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise FormError(413, f"a form may carry at most {MAX_FORM_BYTES} bytes")
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/x-www-form-urlencoded"):
            raise FormError(415, "forms are application/x-www-form-urlencoded")
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                max_num_fields=64,
                strict_parsing=False,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise FormError(400, f"the form does not parse: {exc}") from None
        form = dict(pairs)
        if not session.csrf_ok(form.get("csrf")):
            raise FormError(403, "the form's CSRF token is missing or wrong: reload the page")
        return form

    def render(self, session: Session, name: str, code: int = 200, **values: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            session=session, login_required=self.login_required, **values
        )
        return HTMLResponse(html, status_code=code)

    def _error(self, session: Session, status: int, message: str) -> HTMLResponse:
        return self.render(session, "error.html", status, status=status, message=message)

    def who(self, request: Request, session: Session):
        client = request.client
        peer = f"{client.host}:{client.port}" if client else "unknown"
        return session_info(session.principal, peer)

    # ---------------------------------------------------------------- login

    async def login_form(self, request: Request, session: Session, form: dict) -> Response:
        if not self.login_required:
            return RedirectResponse("/", status_code=303)
        return self.render(session, "login.html", message="")

    async def login(self, request: Request, session: Session, form: dict) -> Response:
        if not self.login_required or self.users is None:
            return RedirectResponse("/", status_code=303)
        name = form.get("username", "")[:256]
        password = form.get("password", "")[:1024]
        ok = await trio.to_thread.run_sync(check_password, self.users, name, password)
        peer = request.client.host if request.client else "unknown"
        if not ok:
            audit.auth_failure("console", peer, "password", name, "wrong user name or password")
            await trio.sleep(self.failure_delay)
            return self.render(session, "login.html", 401, message="wrong user name or password")
        # a new session id at login (no fixation of a pre-login id)
        self.sessions.end(session.sid)
        fresh = self.sessions.start(f"User:{name}", user=name)
        log_event(log, logging.INFO, "console login", user=name, peer=peer)
        response = RedirectResponse("/", status_code=303)
        response.headers.append("Set-Cookie", cookie_header(fresh.sid))
        return response

    async def logout(self, request: Request, session: Session, form: dict) -> Response:
        self.sessions.end(session.sid)
        response = RedirectResponse("/login" if self.login_required else "/", status_code=303)
        response.headers.append("Set-Cookie", cookie_header("", clear=True))
        return response

    # ---------------------------------------------------------------- pages

    async def overview(self, request: Request, session: Session, form: dict) -> Response:
        who = self.who(request, session)
        core = self.core
        topics = core.topic_summary(who)
        points = self.rates.poll()
        return self.render(
            session,
            "overview.html",
            brokers=core.brokers(),
            cluster=core.cluster(),
            topics=topics,
            partitions=sum(t["partitions"] for t in topics),
            offline=core.offline_partitions(),
            disk=core.disk_use(),
            rate=points[-1] if points else None,
        )

    async def topic(self, request: Request, session: Session, form: dict) -> Response:
        who = self.who(request, session)
        name = request.path_params["topic"]
        rows = self.core.partitions(who, name)
        return self.render(
            session,
            "topic.html",
            topic=name,
            rows=rows,
            config=self.core.topic_config(who, name),
            may_alter=self.core.may_alter(who, name),
            message=request.query_params.get("changed", ""),
        )

    async def alter_config(self, request: Request, session: Session, form: dict) -> Response:
        who = self.who(request, session)
        name = request.path_params["topic"]
        key = form.get("key", "")
        await self.core.alter_topic(who, name, key, form.get("value", ""))
        log_event(log, logging.INFO, "console altered topic", topic=name, key=key, by=who.principal)
        query = urllib.parse.urlencode({"changed": key})
        return RedirectResponse(f"/topics/{urllib.parse.quote(name)}?{query}", status_code=303)

    async def messages(self, request: Request, session: Session, form: dict) -> Response:
        who = self.who(request, session)
        topic = request.path_params["topic"]
        partition = request.path_params["partition"]
        q = request.query_params
        fmt = q.get("format", "text")
        if fmt not in FORMATS:
            raise FormError(400, f"format must be one of {', '.join(FORMATS)}")
        limit = min(max(_int(q.get("limit"), 20, "limit"), 1), MAX_RECORDS)
        mode = q.get("from", "end")
        if mode == "offset":
            offset = _int(q.get("offset"), 0, "offset")
        elif mode == "time":
            offset = self.core.offset_for(
                who, topic, partition, time_ms=_int(q.get("time"), 0, "time"), back=0
            )
        elif mode == "end":
            offset = self.core.offset_for(who, topic, partition, time_ms=None, back=limit)
        else:
            raise FormError(400, "from must be offset, time or end")
        start, hw = self.core.bounds(who, topic, partition)
        records = await self.core.read(who, topic, partition, offset, limit)
        return self.render(
            session,
            "messages.html",
            topic=topic,
            partition=partition,
            records=[self._shown(r, fmt) for r in records],
            fmt=fmt,
            formats=FORMATS,
            mode=mode,
            offset=offset,
            limit=limit,
            start=start,
            hw=hw,
            next_offset=records[-1].offset + 1 if records else offset,
            produced=q.get("produced", ""),
        )

    @staticmethod
    def _shown(record: Record, fmt: str) -> dict[str, Any]:
        value = show(record.value, fmt)
        key = show(record.key, "text" if fmt == "json" else fmt)
        return {
            "offset": record.offset,
            "timestamp": record.timestamp,
            "time": _time(record.timestamp),
            "key": key.text,
            "key_truncated": key.truncated,
            "key_size": key.size,
            "value": value.text,
            "value_truncated": value.truncated,
            "value_size": value.size,
            "value_format": value.format,
            "headers": [
                (show(k.encode(), "text").text, show(v, "text").text) for k, v in record.headers
            ],
        }

    async def download(self, request: Request, session: Session, form: dict) -> Response:
        who = self.who(request, session)
        topic = request.path_params["topic"]
        partition = request.path_params["partition"]
        offset = request.path_params["offset"]
        part = request.path_params["part"]
        if part not in ("key", "value"):
            raise FormError(404, "download key or value")
        record = await self.core.record(who, topic, partition, offset)
        data = (record.key if part == "key" else record.value) or b""
        filename = f"{topic}-{partition}-{offset}.{part}.bin"
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def produce(self, request: Request, session: Session, form: dict) -> Response:
        who = self.who(request, session)
        topic = request.path_params["topic"]
        partition = request.path_params["partition"]
        key = form.get("key", "")
        headers = []
        for line in form.get("headers", "").splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise FormError(400, f"a header line is name: value, not {line[:40]!r}")
            headers.append((name.strip(), value.strip().encode()))
        offset = await self.core.produce(
            who,
            topic,
            partition,
            key.encode() if key else None,
            form.get("value", "").encode(),
            headers,
        )
        query = urllib.parse.urlencode({"from": "end", "produced": offset})
        url = f"/topics/{urllib.parse.quote(topic)}/{partition}?{query}"
        return RedirectResponse(url, status_code=303)

    async def tail(self, request: Request, session: Session, form: dict) -> Response:
        """Server-sent events: records from ``offset`` as they become
        readable (one ``records`` event per read of at most TAIL_BATCH),
        at most every TAIL_INTERVAL_S, through the same bounded read. A tail
        more than TAIL_BATCH records behind jumps ahead (a ``skipped``
        event says how many), so its cost per send stays bounded whatever
        the produce rate."""
        who = self.who(request, session)
        topic = request.path_params["topic"]
        partition = request.path_params["partition"]
        fmt = request.query_params.get("format", "text")
        if fmt not in FORMATS:
            raise FormError(400, f"format must be one of {', '.join(FORMATS)}")
        _start, hw = self.core.bounds(who, topic, partition)
        # a reconnecting EventSource says where it was (the id of the last event)
        resumed = request.headers.get("last-event-id")
        offset = _int(resumed or request.query_params.get("offset"), hw, "offset")
        if self.tails >= MAX_TAILS:
            raise FormError(503, f"at most {MAX_TAILS} live tails at once: close one")
        plog = self.core.manager.get(topic, partition)

        async def events() -> AsyncIterator[str]:
            nonlocal offset
            try:
                yield "retry: 2000\n\n"
                while True:
                    behind = plog.high_watermark - offset
                    if behind > TAIL_BATCH:
                        # a person reads the newest records: skip what the
                        # page could not show anyway (bounded work per send)
                        offset += behind - TAIL_BATCH
                        yield f"id: {offset}\nevent: skipped\ndata: {behind - TAIL_BATCH}\n\n"
                    if plog.high_watermark > offset:
                        records = await self.core.read(
                            who, topic, partition, offset, TAIL_BATCH, max_bytes=TAIL_READ_BYTES
                        )
                        if records:
                            offset = records[-1].offset + 1
                            shown = [self._shown(r, fmt) for r in records]
                            yield f"id: {offset}\nevent: records\ndata: {json.dumps(shown)}\n\n"
                        await trio.sleep(TAIL_INTERVAL_S)
                        continue
                    with trio.move_on_after(TAIL_KEEPALIVE_S):
                        await plog.hw_event.wait()
                    if plog.high_watermark <= offset:
                        yield ": keep-alive\n\n"
            except BrokerError as exc:
                yield f"event: failed\ndata: {json.dumps(exc.message)}\n\n"

        return _TailStream(self, events())

    async def groups(self, request: Request, session: Session, form: dict) -> Response:
        who = self.who(request, session)
        return self.render(session, "groups.html", groups=self.core.group_ids(who))

    async def group(self, request: Request, session: Session, form: dict) -> Response:
        who = self.who(request, session)
        group_id = request.query_params.get("id", "")
        view = self.core.group(who, group_id)
        self._record_lag(group_id, view.total_lag)
        topics = sorted({p.topic for p in view.partitions})
        return self.render(
            session,
            "group.html",
            group=view,
            topics=topics,
            plan=None,
            message=request.query_params.get("reset", ""),
        )

    async def reset(self, request: Request, session: Session, form: dict) -> Response:
        """First POST: show what would change and ask to confirm. A POST
        with ``confirm=yes`` and the offsets shown applies exactly those."""
        who = self.who(request, session)
        group_id = form.get("id", "")
        topic = form.get("topic", "")
        to = form.get("to", "")
        if form.get("confirm") == "yes":
            plan = []
            for field, value in form.items():
                if field.startswith("p."):
                    plan.append((_int(field[2:], 0, "partition"), _int(value, 0, "offset")))
            if not plan:
                raise FormError(400, "nothing to reset")
            await self.core.reset_offsets(who, group_id, topic, plan)
            log_event(
                log,
                logging.INFO,
                "console reset offsets",
                group=group_id,
                topic=topic,
                by=who.principal,
            )
            query = urllib.parse.urlencode({"id": group_id, "reset": topic})
            return RedirectResponse(f"/group?{query}", status_code=303)
        plan = self.core.reset_plan(who, group_id, topic, to, form.get("value", ""))
        view = self.core.group(who, group_id)
        return self.render(
            session,
            "group.html",
            group=view,
            topics=sorted({p.topic for p in view.partitions}),
            plan={"topic": topic, "to": to, "rows": plan},
            message="",
        )

    def _record_lag(self, group_id: str, lag: int) -> None:
        now = time.monotonic()
        if now - self._lag_at.get(group_id, -math.inf) < 1.0:
            return
        self._lag_at[group_id] = now
        series = self.lag.get(group_id)
        if series is None:
            while len(self.lag) >= LAG_GROUPS:
                gone, _ = self.lag.popitem(last=False)
                self._lag_at.pop(gone, None)
            series = self.lag[group_id] = deque(maxlen=LAG_POINTS)
        self.lag.move_to_end(group_id)
        series.append((round(time.time() * 1000), lag))

    async def group_lag(self, request: Request, session: Session, form: dict) -> Response:
        who = self.who(request, session)
        group_id = request.query_params.get("id", "")
        view = self.core.group(who, group_id)
        self._record_lag(group_id, view.total_lag)
        return JSONResponse(
            {
                "lag": view.total_lag,
                "series": list(self.lag.get(group_id, ())),
                "partitions": [
                    {"topic": p.topic, "partition": p.partition, "lag": p.lag}
                    for p in view.partitions
                ],
            }
        )

    async def charts(self, request: Request, session: Session, form: dict) -> Response:
        return self.render(session, "charts.html")

    async def metrics_json(self, request: Request, session: Session, form: dict) -> Response:
        return JSONResponse({"points": self.rates.poll()})
