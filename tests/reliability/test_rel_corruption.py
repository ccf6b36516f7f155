"""Scenario 6: corruption at rest, made while the broker is stopped.

A topic with several sealed segments is written by an oracle producer and
the broker stopped cleanly. Then, per seed, one file is damaged: a flipped
bit in a sealed segment (inside a batch, or in its base offset, which the
CRC does not cover), a sealed segment cut short, or an index / time index
file with a flipped bit, cut short or overwritten with garbage. Restarted
(after the clean shutdown, and also as after a crash, when recovery scans
from the checkpoint), the broker must:

* never serve damaged bytes as data: every record a consumer gets is one
  the oracle sent, at its acknowledged offset;
* report log damage with the offset range: the consumer reading the
  partition gets an error naming the damaged offsets (or the partition is
  refused with a StorageError naming them), not a silent skip or a hang;
* treat index damage as no data damage: every record is served, and the
  index files on disk are correct again afterwards (rebuilt).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import zlib
from pathlib import Path

import pytest
from rel_helpers import create_topic, live_broker, producing
from rel_profile import record_result, seeds

from tailrace.broker.faultkit.oracle import (
    History,
    check,
    read_partition_dir,
)
from tailrace.broker.faultkit.workload import read_topic
from tailrace.client import AsyncAdmin
from tailrace.client.protocol import FetchPartition, FetchRequest, FetchTopic
from tailrace.client.records import iter_headers, validate_batch
from tailrace.client.transport import BrokerConnection

LOG_DAMAGE = ("log bit flip", "log base offset flip", "log truncation")
INDEX_DAMAGE = ("index bit flip", "index truncation", "index garbage", "timeindex bit flip")


async def _write(data, history: History) -> None:
    async with live_broker(data) as b:
        await create_topic(
            b.address, "t", 1, segment_bytes=12_000, index_interval_bytes=600, flush="none"
        )
        async with producing(
            b.address,
            "t",
            history,
            producers=1,
            partitions=1,
            pad=90,
            config={"linger_ms": 0, "batch_bytes": 700},
        ):
            await history.until(lambda: history.acked_in[("t", 0)] >= 600)
    history.finish()


_TEMPLATE: list[tuple[Path, History]] = []


async def _written(data: Path, factory: pytest.TempPathFactory) -> History:
    """A copy of one topic written once per session (with its history)."""
    if not _TEMPLATE:
        template = factory.mktemp("corruption-template") / "data"
        history = History()
        await _write(template, history)
        _TEMPLATE.append((template, history))
    template, history = _TEMPLATE[0]
    shutil.copytree(template, data)
    return history  # read-only from here on


def _damage(part_dir: str, kind: str, rng: random.Random) -> tuple[int, int]:
    """Damage one sealed segment (not the last); returns the offset range of
    the batch hit (log damage) or of the segment (index damage)."""
    bases = sorted(int(n[:-4]) for n in os.listdir(part_dir) if n.endswith(".log"))
    assert len(bases) >= 3, bases
    base = rng.choice(bases[:-1])
    stem = os.path.join(part_dir, f"{base:020d}")
    if kind.startswith("log"):
        with open(stem + ".log", "rb") as f:
            data = f.read()
        batches = list(iter_headers(data))
        pos, h = rng.choice(batches)
        with open(stem + ".log", "r+b") as f:
            if kind == "log truncation":
                f.truncate(pos + rng.randrange(1, h.size))
            else:
                at = pos + (
                    rng.randrange(0, 8) if "base offset" in kind else rng.randrange(21, h.size)
                )
                f.seek(at)
                f.write(bytes([data[at] ^ (1 << rng.randrange(8))]))
        return h.base_offset, h.last_offset
    end = bases[bases.index(base) + 1]
    path = stem + (".timeindex" if kind.startswith("timeindex") else ".index")
    size = os.path.getsize(path)
    assert size > 0, path
    with open(path, "r+b") as f:
        if kind == "index truncation":
            f.truncate(rng.randrange(0, size))
        elif kind == "index garbage":
            at = rng.randrange(0, size)
            f.seek(at)
            f.write(rng.randbytes(min(size - at, rng.randint(1, 24))))
        else:
            at = rng.randrange(0, size)
            f.seek(at)
            old = f.read(1)
            f.seek(at)
            f.write(bytes([old[0] ^ (1 << rng.randrange(8))]))
    return base, end - 1


@pytest.mark.parametrize("restart", ["clean", "after a crash"])
@pytest.mark.parametrize("kind", LOG_DAMAGE + INDEX_DAMAGE)
async def test_corruption_at_rest_is_detected_and_never_served(
    tmp_path, tmp_path_factory, nursery, kind, restart, caplog
):
    caplog.set_level(logging.CRITICAL)
    runs = 0
    checked = 0
    for seed in seeds(zlib.crc32(kind.encode()) & 0xFFFF, short=1, long=15):
        rng = random.Random(seed)
        data = tmp_path / f"{seed}"
        history = await _written(data, tmp_path_factory)
        part = str(data / "t" / "0")
        damaged = _damage(part, kind, rng)
        if restart == "after a crash":
            os.unlink(data / "~clean-shutdown")
        context = f"{kind}, restart {restart}, seed {seed}, damaged offsets {damaged}"
        async with live_broker(data) as b:
            (read,) = await read_topic(b.address, "t", timeout=20)
            if kind in INDEX_DAMAGE:
                # a lookup at every offset of the segment uses every entry
                conn = await BrokerConnection.connect(nursery, b.address)
                for offset in range(damaged[0], damaged[1] + 1):
                    first = await _first_offset_served(conn, offset)
                    assert first <= offset, f"{context}: fetch at {offset} served from {first}"
                # a lookup by timestamp uses the time index: the answer lies in
                # the first batch holding a timestamp at or after the one asked
                batches = _batches(part)
                lo, hi = damaged
                inside = [(p, h) for p, h in batches if lo <= h.base_offset <= hi]
                async with AsyncAdmin(b.address) as admin:
                    for _pos, h in rng.sample(inside, min(10, len(inside))):
                        ((offset, _ts),) = (
                            await admin.list_offsets({("t", 0): h.max_timestamp})
                        ).values()
                        want = next(g for _p, g in batches if g.max_timestamp >= h.max_timestamp)
                        assert want.base_offset <= offset <= want.last_offset, (
                            f"{context}: timestamp {h.max_timestamp} gave offset {offset}, "
                            f"expected {want.base_offset}..{want.last_offset}"
                        )
        report = check(history, [read])
        assert report.count("unexpected") == 0, f"{context}\n{report}"
        assert report.count("misplaced") == 0, f"{context}\n{report}"
        assert report.count("duplicated") == 0, f"{context}\n{report}"
        if kind in INDEX_DAMAGE:
            assert report.ok, f"index damage lost data: {context}\n{report}"
            after = read_partition_dir(part, "t", 0)
            assert not after.problems, f"{context}: index not rebuilt: {after.problems}"
        else:
            first, last = damaged
            served = {o for o, _v in read.records}
            assert not served & set(range(first, last + 1)), f"damaged batch served: {context}"
            assert all(o < first for o in served), f"served past the damage: {context}"
            assert len(read.problems) == 1, f"no error for the damage: {context}\n{read.problems}"
            problem = read.problems[0]
            named = [int(s) for s in _numbers(problem)]
            assert any(first <= n <= last for n in named), (
                f"the error does not name offsets {first}..{last}: {problem}\n{context}"
            )
        checked += report.records_read
        runs += 1
    if runs:
        record_result(
            f"corruption at rest: {kind} ({restart} restart)",
            runs=runs,
            faults=runs,
            records_checked=checked,
            lost=0,
        )


def _batches(part_dir: str) -> list:
    """(position, header) of every batch of the partition, in offset order."""
    out = []
    for name in sorted(n for n in os.listdir(part_dir) if n.endswith(".log")):
        with open(os.path.join(part_dir, name), "rb") as f:
            out.extend(iter_headers(f.read()))
    return out


async def _first_offset_served(conn: BrokerConnection, offset: int) -> int:
    """The first offset of what a fetch at ``offset`` returns (CRC-checked)."""
    response = await conn.request(
        FetchRequest(
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=300,
            topics=[
                FetchTopic(
                    name="t",
                    partitions=[FetchPartition(partition=0, fetch_offset=offset, max_bytes=300)],
                )
            ],
        )
    )
    part = response.topics[0].partitions[0]
    assert part.error_code == 0, part.error_message
    records = bytes(part.records)
    (pos, h), *_ = iter_headers(records)
    validate_batch(records, pos, max_batch_bytes=1 << 20)
    assert h.base_offset <= offset <= h.last_offset
    return h.base_offset


def _numbers(text: str) -> list[str]:
    out, cur = [], ""
    for ch in text:
        if ch.isdigit():
            cur += ch
        elif cur:
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out
