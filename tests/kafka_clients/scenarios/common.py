"""What every client scenario shares; standard library only.

A scenario script runs in its client's own virtualenv (``make clients``), so
it imports neither tailrace nor pytest: it reads one JSON document (the
plan: bootstrap address, topic, records to produce, steps to run) on stdin,
runs the steps with its client library, and prints one JSON document of what
it saw on stdout. The pytest side (tests/kafka_clients/test_client_matrix.py)
builds the plan and checks the results field by field.

Bytes travel as hex strings (``None`` stays ``null``), so keys, values and
headers that are not UTF-8 compare exactly.

The consumer-group step is the same dance for every client, driven here over
a small ``Member`` interface: three members subscribe and settle on one
partition each; each reads its partition; the third commits an offset in the
middle of its partition and leaves; the other two commit what they read,
take over the third's partition and must resume at that committed offset;
their final commits are read back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

GROUP_MEMBERS = 3
#: every wait in a scenario ends after this many seconds with a description
#: of what it was waiting for; the pytest side has its own, longer, timeout
WAIT_S = 60.0
#: group settings: the broker's shortest session timeout, heartbeats often
#: enough that a member hears of a rebalance within a fraction of a second
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 200


def b(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def h(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).hex()


def record(
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]] | None,
    timestamp: int,
) -> dict[str, Any]:
    """A consumed record as the pytest side compares it."""
    return {
        "partition": partition,
        "offset": offset,
        "key": h(key),
        "value": h(value),
        "headers": [[k, h(v)] for k, v in (headers or [])],
        "timestamp": timestamp,
    }


def headers_of(rec: dict[str, Any]) -> list[tuple[str, bytes | None]]:
    return [(k, b(v)) for k, v in rec["headers"]]


def read_plan() -> dict[str, Any]:
    return json.loads(sys.stdin.read())


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def error_info(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc)}


#: ``MATRIX_CLIENT_DEBUG=kafka.coordinator,kafka.consumer`` logs those
#: loggers of the client library at DEBUG on stderr (the pytest side shows
#: stderr's last lines when a step fails; a broker at ``--log-level DEBUG``
#: logs the requests that go with them, see docs/kafka.md)
DEBUG_ENV = "MATRIX_CLIENT_DEBUG"


def client_debug_logging() -> None:
    names = [n for n in os.environ.get(DEBUG_ENV, "").split(",") if n]
    if not names:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(message)s"))
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)


def run(steps: dict[str, Callable[[dict[str, Any]], Any]], client: dict[str, Any]) -> int:
    """Run the plan's steps in order; print the results; exit 1 on a failed step.

    ``steps`` maps a step name to a function of the plan returning that step's
    results (a coroutine function is run with asyncio). A failing step stops
    the run: its traceback goes into the results under ``error``.
    """
    client_debug_logging()
    plan = read_plan()
    results: dict[str, Any] = {"client": client, "steps": {}}
    code = 0
    for name in plan["steps"]:
        started = time.monotonic()
        log(f"step {name} ...")
        try:
            out = steps[name](plan)
            if asyncio.iscoroutine(out):
                out = asyncio.run(out)
            results["steps"][name] = out
        except BaseException as exc:  # reported to the pytest side, which fails the test
            results["error"] = {"step": name, **error_info(exc), "trace": traceback.format_exc()}
            log(traceback.format_exc())
            code = 1
            break
        finally:
            log(f"step {name} took {time.monotonic() - started:.2f} s")
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return code


async def wait_for(what: str, ready: Callable[[], bool], describe: Callable[[], Any]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {WAIT_S:.0f} s waiting for {what}: {describe()}")
        await asyncio.sleep(0.05)


# --- the consumer-group step ------------------------------------------------


class Member:
    """One group member, as the group step drives it.

    A subclass keeps ``assigned`` (the partitions of its current assignment)
    and ``records`` (partition -> records consumed while it holds the
    partition) up to date in ``poll``, through the client's rebalance
    listener: ``on_revoked`` before a rebalance, ``on_assigned`` after it,
    ``on_lost`` when the client was fenced out of the group.

    What a member has read of a partition it is assigned again depends on
    the client. Most (librdkafka, aiokafka, kafka-python 2.3, and Kafka's
    Java consumer) drop every fetch position when they revoke their
    partitions before an eager rebalance, and read the partition again from
    its committed offset: an assignment starts with nothing read.
    kafka-python 3 (``keeps_positions``) keeps the position of a partition
    that is in both its old and its new assignment
    (``SubscriptionState.assign_from_subscribed``: "Preserves
    TopicPartitionState (position, ...) for any partition present in both
    the prior and new assignments") and goes on from there, so the records
    it read of that partition before the rebalance still count; a
    partition it did not hold before, or lost, starts with nothing read.
    """

    #: the client continues a partition it is assigned again from its own
    #: position instead of the committed offset (see the class docstring)
    keeps_positions = False

    def __init__(self) -> None:
        self.assigned: set[int] = set()
        self.records: dict[int, list[dict[str, Any]]] = {}
        self.assignments: list[list[int]] = []  # every assignment, in order
        #: between on_revoked and on_assigned: what was read of each
        #: partition given up, for a client that keeps its positions
        self._revoked: dict[int, list[dict[str, Any]]] = {}

    def on_assigned(self, partitions: set[int]) -> None:
        kept = self._revoked if self.keeps_positions else {}
        self.assigned = set(partitions)
        self.records = {p: kept[p] for p in partitions if p in kept}
        self._revoked = {}
        self.assignments.append(sorted(partitions))

    def on_revoked(self) -> None:
        self._revoked = self.records
        self.assigned = set()
        self.records = {}

    def on_lost(self) -> None:
        """Fenced: every client reads its next partitions from the committed offsets."""
        self._revoked = {}
        self.assigned = set()
        self.records = {}

    def consumed(self, rec: dict[str, Any]) -> None:
        self.records.setdefault(rec["partition"], []).append(rec)

    def forget_records(self) -> None:
        """From now on only what is read after this call counts (the group
        step calls it once a member has committed what it read)."""
        self.records = {}
        self._revoked = {}

    async def start(self) -> None:
        raise NotImplementedError

    async def poll(self) -> None:
        raise NotImplementedError

    async def commit(self, offsets: dict[int, int]) -> None:
        raise NotImplementedError

    async def committed(self, partitions: list[int]) -> dict[int, int | None]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def restart_count(self) -> None:
        """:meth:`forget_records`, in step with ``poll`` (a subclass whose
        client calls back on another thread runs it there)."""
        self.forget_records()

    def state(self) -> dict[str, Any]:
        return {
            "assigned": sorted(self.assigned),
            "offsets": {p: [r["offset"] for r in rs] for p, rs in self.records.items()},
        }


class ThreadMember(Member):
    """A member over a blocking client: every call on the client runs on one
    thread of its own (the clients are not thread-safe), in call order."""

    def __init__(self) -> None:
        super().__init__()
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def restart_count(self) -> None:
        await self.call(self.forget_records)

    def shutdown(self) -> None:
        self._thread.shutdown(wait=True)


def _read_up_to(m: Member, p: int, start: int, high: int) -> bool:
    """Whether ``m`` read partition ``p`` to ``high`` (nothing to read from ``start``: yes)."""
    if start >= high:
        return True
    offsets = [r["offset"] for r in m.records.get(p, [])]
    return bool(offsets) and offsets[-1] >= high - 1


async def group_step(
    make_member: Callable[[int], Member], partitions: int, highs: dict[int, int]
) -> dict[str, Any]:
    """Three members; one leaves; the rest take over from its committed offset."""
    members = [make_member(i) for i in range(GROUP_MEMBERS)]
    running = {i: True for i in range(GROUP_MEMBERS)}
    everything = set(range(partitions))

    async def poll_loop(i: int) -> None:
        while running[i]:
            await members[i].poll()

    def describe() -> Any:
        return {i: members[i].state() for i in range(GROUP_MEMBERS) if running[i]}

    def failed() -> None:
        """A member's poll raised: that is the step's error."""
        for task in loops:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    for m in members:
        await m.start()
    loops = [asyncio.ensure_future(poll_loop(i)) for i in range(GROUP_MEMBERS)]
    closed: set[int] = set()
    out: dict[str, Any] = {}
    try:

        def settled(active: list[int], starts: dict[int, int]) -> bool:
            held = [members[i].assigned for i in active]
            if set().union(*held) != everything or sum(map(len, held)) != partitions:
                return False
            return all(
                _read_up_to(members[i], p, starts.get(p, 0), highs[p])
                for i in active
                for p in members[i].assigned
            )

        # 1. three members, one partition each, each reads its partition
        def one_each() -> bool:
            everyone = list(range(GROUP_MEMBERS))
            return settled(everyone, {}) and all(len(members[i].assigned) == 1 for i in everyone)

        await wait_for(
            "three members to hold one partition each and read it",
            lambda: failed() or one_each(),
            describe,
        )
        out["first"] = {
            "assigned": [sorted(m.assigned) for m in members],
            "records": [{str(p): list(rs) for p, rs in m.records.items()} for m in members],
        }
        # 2. the last member commits the middle of its partition and leaves;
        # the others commit what they read
        leaver = GROUP_MEMBERS - 1
        (left_partition,) = members[leaver].assigned
        middle = highs[left_partition] // 2
        await members[leaver].commit({left_partition: middle})
        for i in range(leaver):
            await members[i].commit({p: highs[p] for p in members[i].assigned})
            # what they read before the commit is checked; after it, a
            # member must read its own partition no more (it is committed
            # to the end) and the leaver's from the leaver's commit
            await members[i].restart_count()
        running[leaver] = False
        await loops[leaver]
        closed.add(leaver)
        await members[leaver].close()
        out["left"] = {"member": leaver, "partition": left_partition, "committed": middle}
        # 3. the other two take over its partition, from the committed offset
        rest = list(range(leaver))
        await wait_for(
            f"the remaining members to take over partition {left_partition}",
            lambda: failed() or settled(rest, {**highs, left_partition: middle}),
            describe,
        )
        out["second"] = {
            "assigned": [sorted(members[i].assigned) for i in rest],
            "records": [{str(p): list(rs) for p, rs in members[i].records.items()} for i in rest],
        }
        for i in rest:
            await members[i].commit({p: highs[p] for p in members[i].assigned})
        got = await members[0].committed(sorted(everything))
        out["committed"] = {str(p): o for p, o in got.items()}
        out["assignments"] = [m.assignments for m in members]
    finally:
        for i in range(GROUP_MEMBERS):
            running[i] = False
        await asyncio.gather(*loops, return_exceptions=True)
        for i in range(GROUP_MEMBERS):
            if i not in closed:
                await members[i].close()
        for m in members:
            if isinstance(m, ThreadMember):
                m.shutdown()
    return out
