"""A small replicated partition driven by tailrace's replication decisions.

No I/O and no time: replicas are lists of records, the cluster store is one
PartitionState changed by compare-and-swap, and every step is a method call
the test chooses (a scripted scenario, or Hypothesis). What happens between
the steps -- which replica learns what, when -- is exactly the freedom a real
cluster has, so the scenarios of KIP-101, KIP-279 and KAFKA-7164 can be
written down step by step.

Model
-----
* A replica holds ``log`` (records ``Rec(epoch, value)``), ``durable`` (the
  prefix that survives a power cut), its epoch cache and the cache's durable
  checkpoint, its high watermark, and a LeaderState or FollowerState built
  from the store state it last read (``sync``). A replica that has not synced
  acts on old state: a zombie leader, a follower in an old epoch.
* ``sync=True`` models flush ``sync``: the leader counts its fsynced offset
  for the high watermark, and a follower fsyncs before each fetch so the
  position it reports is durable. ``sync=False`` models flush ``none``.
* ``crash(r, power=True)`` loses everything past ``durable`` and rebuilds the
  epoch cache from its checkpoint cut at the recovered log end (what the
  partition log does on recovery); ``power=False`` is kill -9 (the page cache
  survives).
* The controller acts on ``expire(r)`` (r's lease ran out: dead, paused or cut
  off) and ``elect(prefer)`` (a controlled move); both go through the
  decisions in election.py and a CAS.

Checker (``check()`` after every step, ``heal()`` + ``final_check()`` at the
end), raising :class:`Violation`:

* lost: every acknowledged (acks=all) record is in the log of every member
  of the store's ISR, at its offset (dead members keep their durable log);
  no replica truncates below its high watermark.
* agree: two replicas hold the same records below the lower of their high
  watermarks; a record the same on two replicas has the same log before it
  (log matching); after heal every log is the same.
* monotonic: the store's leader epoch, each replica's high watermark and the
  high watermark the leader serves only increase; each epoch cache matches
  the epochs in its log.

``Bugs`` switch single rules off (negative controls): each makes the checker
report a loss or a divergence in its scenario, which shows that the checker
can see that class of bug. Any switch also turns off the fetch-time
divergence check (KIP-320): it would repair some of these on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from tailrace.broker.replication import (
    NO_LEADER,
    EpochEntry,
    FencedLeaderEpochError,
    FollowerState,
    IsrChange,
    LeaderEpochCache,
    LeaderState,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    OffsetNotAvailableError,
    PartitionState,
    UnknownLeaderEpochError,
    diverging_epoch,
    elect_leader,
    remove_replica,
    request_epoch,
    truncation_point,
)

_FENCED = (FencedLeaderEpochError, UnknownLeaderEpochError)


class Violation(AssertionError):
    """The checker found a lost, diverged or regressed record or mark."""


@dataclass(frozen=True)
class Bugs:
    #: pre-KIP-101: a follower cuts its log to its high watermark on every
    #: epoch change instead of asking the leader
    truncate_to_hw: bool = False
    #: unclean election: with no live ISR member, any live replica leads
    unclean_election: bool = False
    #: KAFKA-7164: no truncation when the new epoch has the leader the
    #: follower already followed
    skip_same_leader_truncation: bool = False
    #: KIP-101 without KIP-279: one OffsetForLeaderEpoch round, and the
    #: answer's end offset is trusted without comparing its epoch
    single_round_truncation: bool = False
    #: serve a new leader's high watermark before it is established
    serve_unestablished_hw: bool = False
    #: a restarted broker resumes leading in the epoch it led before (the
    #: controller does not treat its new registration as a death)
    resume_epoch_after_restart: bool = False

    @property
    def any(self) -> bool:
        return any(vars(self).values())


class Rec(NamedTuple):
    epoch: int
    value: str


class Replica:
    def __init__(self, rid: int) -> None:
        self.id = rid
        self.alive = True
        self.log: list[Rec] = []
        self.durable = 0
        self.cache = LeaderEpochCache()
        self.checkpoint: list[EpochEntry] = []
        self.hw = 0
        self.leader: LeaderState | None = None
        self.follower: FollowerState | None = None
        #: the leader this replica last truncated against (KAFKA-7164 control)
        self.truncated_against = NO_LEADER

    @property
    def leo(self) -> int:
        return len(self.log)

    def persist_cache(self) -> None:
        self.checkpoint = self.cache.entries()

    def __repr__(self) -> str:
        role = "L" if self.leader else "F" if self.follower else "-"
        vals = " ".join(f"{r.value}@{r.epoch}" for r in self.log)
        return f"<r{self.id}{role}{'' if self.alive else ' DEAD'} hw={self.hw} [{vals}]>"


class Cluster:
    def __init__(
        self,
        ids: tuple[int, ...] = (1, 2, 3),
        *,
        min_isr: int = 2,
        lag_ms: int = 100,
        sync: bool = True,
        bugs: Bugs | None = None,
        check_loss: bool = True,
        max_fetch: int = 2,
    ) -> None:
        self.replicas = {i: Replica(i) for i in ids}
        self.bugs = bugs or Bugs()
        self.min_isr = min_isr
        self.lag_ms = lag_ms
        self.sync_flush = sync
        self.check_loss = check_loss
        self.max_fetch = max_fetch
        self.revision = 1
        self.state = replace(PartitionState.new(ids), version=self.revision)
        self.live = set(ids)
        self.now = 0
        self.acked: dict[int, str] = {}
        #: acknowledged records overwritten (only without check_loss)
        self.lost: list[str] = []
        self.pending_acks: list[tuple[int, int, int, str]] = []
        self.pending_isr: dict[int, IsrChange] = {}
        self.served_max = 0
        self.last_hw = dict.fromkeys(ids, 0)
        self.counter = 0
        self.trace: list[str] = []
        for r in ids:
            self.sync(r)
        for r in ids:
            self.truncate(r)

    def __repr__(self) -> str:
        return f"{self.state}\n" + "\n".join(map(repr, self.replicas.values()))

    def counted(self, rep: Replica) -> int:
        """The offset a replica's log counts toward the high watermark."""
        return rep.durable if self.sync_flush else rep.leo

    # ------------------------------------------------------------ the store

    def cas(self, base_version: int, new: PartitionState) -> bool:
        if self.state.version != base_version:
            return False
        if new.leader_epoch < self.state.leader_epoch:
            raise Violation(f"leader epoch went back: {self.state} -> {new}")
        self.revision += 1
        self.state = replace(new, version=self.revision)
        self.trace.append(f"store: {self.state}")
        return True

    def _unclean(self, new: PartitionState) -> PartitionState:
        if new.online or not self.bugs.unclean_election:
            return new
        for r in new.replicas:
            if r in self.live:
                return replace(new, leader=r, isr=(r,))
        return new

    # ----------------------------------------------------------- controller

    def expire(self, rid: int) -> None:
        """The controller saw ``rid``'s lease expire."""
        if rid not in self.live:
            return
        self.live.discard(rid)
        new = self._unclean(remove_replica(self.state, rid, self.live))
        if new is not self.state:
            self.cas(self.state.version, new)

    def elect(self, prefer: int | None = None) -> None:
        """A controller election (a controlled move to ``prefer``, or an
        offline partition whose ISR member is back)."""
        new = self._unclean(elect_leader(self.state, self.live, prefer=prefer))
        if new.online or self.state.online:
            self.cas(self.state.version, new)

    # ------------------------------------------------------------- replicas

    def sync(self, rid: int) -> None:
        """``rid`` (re-)registers and reads the partition state."""
        rep = self.replicas[rid]
        if not rep.alive:
            return
        if rid not in self.live:
            self.live.add(rid)
        if not self.state.online and rid in self.state.isr:
            self.elect()
        st = self.state
        if st.leader == rid:
            if rep.leader is None or rep.leader.leader_epoch != st.leader_epoch:
                rep.follower = None
                self.pending_isr.pop(rid, None)
                if rep.cache.assign(st.leader_epoch, rep.leo):
                    rep.persist_cache()
                rep.leader = LeaderState(
                    st,
                    version=st.version,
                    replica_id=rid,
                    epoch_start_offset=rep.leo,
                    high_watermark=min(rep.hw, rep.leo),
                    now_ms=self.now,
                    replica_lag_time_max_ms=self.lag_ms,
                    min_insync_replicas=self.min_insync(),
                )
                self.trace.append(f"r{rid} leads epoch {st.leader_epoch} from {rep.leo}")
            elif rep.leader.version != st.version:
                rep.leader.apply_state(st, st.version)
                self.pending_isr.pop(rid, None)
            return
        rep.leader = None
        self.pending_isr.pop(rid, None)
        if rep.follower is None:
            rep.follower = FollowerState(rid, rep.hw)
        if st.leader_epoch > rep.follower.leader_epoch:
            rep.follower.on_state(st)

    def min_insync(self) -> int:
        return self.min_isr

    def produce(self, rid: int, value: str | None = None) -> str:
        """An acks=all produce sent to ``rid`` (which may only think it leads)."""
        rep = self.replicas.get(rid)
        if rep is None or not rep.alive or rep.leader is None:
            return "not leader"
        try:
            rep.leader.check_append(-1)
        except NotEnoughReplicasError:
            return "refused"
        if value is None:
            self.counter += 1
            value = f"v{self.counter}"
        epoch = rep.leader.leader_epoch
        offset = rep.leo
        rep.log.append(Rec(epoch, value))
        self.pending_acks.append((rid, epoch, offset, value))
        self.trace.append(f"r{rid} appends {value}@{epoch} at {offset}")
        self._leader_progress(rep)
        return "appended"

    def flush(self, rid: int) -> None:
        rep = self.replicas[rid]
        if rep.alive:
            rep.durable = rep.leo
            self._leader_progress(rep)

    def _leader_progress(self, rep: Replica) -> None:
        if rep.leader is not None:
            rep.leader.update_high_watermark(self.counted(rep))
            rep.hw = rep.leader.high_watermark
        self.resolve_acks()

    def resolve_acks(self) -> None:
        keep = []
        for rid, epoch, offset, value in self.pending_acks:
            rep = self.replicas[rid]
            if not rep.alive or rep.leader is None or rep.leader.leader_epoch != epoch:
                continue  # the request fails: not acknowledged
            try:
                done = rep.leader.acks_all_done(offset + 1)
            except NotEnoughReplicasAfterAppendError:
                continue  # ambiguous: not counted as acknowledged
            if not done:
                keep.append((rid, epoch, offset, value))
                continue
            old = self.acked.get(offset)
            if old is not None and old != value:
                if self.check_loss:
                    raise Violation(f"offset {offset} acknowledged as {old} and as {value}")
                self.lost.append(old)
            self.acked[offset] = value
            self.trace.append(f"ack {value} at {offset}")
        self.pending_acks = keep

    def fetch(self, fid: int, *, lose_response: bool = False) -> str:
        """One follower fetch; ``lose_response``: the leader handled it but
        the response never arrived (the follower crashed or the network cut)."""
        f = self.replicas[fid]
        if not f.alive or f.follower is None or f.follower.needs_truncation:
            return "not fetching"
        lid = f.follower.leader
        if lid == NO_LEADER:
            return "no leader"
        lead = self.replicas[lid]
        if not lead.alive or lead.leader is None:
            return "not leader"
        if self.sync_flush:
            f.durable = f.leo
        fetch_offset = f.leo
        epoch = f.follower.leader_epoch
        try:
            lead.leader.check_epoch(epoch)
        except _FENCED:
            return "fenced"
        if not self.bugs.any and fetch_offset:
            div = diverging_epoch(lead.cache, f.log[-1].epoch, fetch_offset, lead.leo)
            if div is not None:
                if not lose_response:
                    state = truncation_point(f.cache, 0, f.leo, div)
                    self.truncate_log(f, state.offset)
                    if not state.done:
                        f.follower.needs_truncation = True
                return "diverged"
        if fetch_offset > lead.leo:
            # Kafka's out-of-range handling: cut to the leader's log end
            if not lose_response:
                self.truncate_log(f, lead.leo)
            return "out of range"
        lead.leader.on_follower_fetch(
            fid, fetch_offset, epoch, self.now, lead.leo, self.counted(lead)
        )
        lead.hw = lead.leader.high_watermark
        self.resolve_acks()
        if lose_response:
            return "lost"
        for rec in lead.log[fetch_offset : fetch_offset + self.max_fetch]:
            if f.cache.assign(rec.epoch, f.leo):
                f.persist_cache()
            f.log.append(rec)
        f.hw = f.follower.update_high_watermark(lead.leader.high_watermark, self.counted(f))
        return "fetched"

    def truncate_log(self, rep: Replica, offset: int) -> None:
        # the cache is cut even when no record is: a replica that led an epoch
        # without writing in it holds an entry starting at its log end
        if rep.cache.truncate_from_end(offset):
            rep.persist_cache()
        if offset >= rep.leo:
            return
        if offset < rep.hw:
            if self.check_loss:
                raise Violation(
                    f"r{rep.id} truncates to {offset}, below its high watermark {rep.hw}"
                )
            rep.hw = offset
            if rep.follower is not None:
                rep.follower.high_watermark = offset
        self.trace.append(f"r{rep.id} truncates to {offset}")
        del rep.log[offset:]
        rep.durable = min(rep.durable, offset)

    def truncate(self, fid: int) -> str:
        """The follower's truncation after an epoch change (OffsetForLeaderEpoch)."""
        f = self.replicas[fid]
        if not f.alive or f.follower is None or not f.follower.needs_truncation:
            return "nothing to do"
        lid = f.follower.leader
        if lid == NO_LEADER:
            return "no leader"
        lead = self.replicas[lid]
        if not lead.alive or lead.leader is None:
            return "not leader"
        bugs = self.bugs
        if bugs.skip_same_leader_truncation and lid == f.truncated_against:
            pass
        elif bugs.truncate_to_hw:
            self.truncate_log(f, f.hw)
        elif bugs.single_round_truncation:
            answer = lead.cache.end_offset_for(request_epoch(f.cache), lead.leo)
            if not answer.undefined:
                self.truncate_log(f, min(answer.end_offset, f.leo))
        else:
            for _ in range(1000):
                try:
                    answer = lead.leader.offset_for_epoch(
                        lead.cache, lead.leo, request_epoch(f.cache), f.follower.leader_epoch
                    )
                except _FENCED:
                    return "fenced"
                state = truncation_point(f.cache, 0, f.leo, answer)
                self.truncate_log(f, state.offset)
                if state.done:
                    break
            else:
                raise Violation("truncation did not converge")
        f.follower.truncated()
        f.truncated_against = lid
        return "truncated"

    def crash(self, rid: int, *, power: bool = True) -> None:
        rep = self.replicas[rid]
        if not rep.alive:
            return
        rep.alive = False
        rep.leader = None
        rep.follower = None
        self.pending_isr.pop(rid, None)
        # the produce requests waiting on it die with it (not acknowledged)
        self.pending_acks = [p for p in self.pending_acks if p[0] != rid]
        if power:
            del rep.log[rep.durable :]
            rep.cache = LeaderEpochCache(rep.checkpoint)
            if rep.cache.truncate_from_end(rep.leo):
                rep.persist_cache()
        rep.durable = rep.leo
        rep.hw = min(rep.hw, rep.leo)
        self.trace.append(f"r{rid} crashes{' (power)' if power else ''}")

    def restart(self, rid: int) -> None:
        """``rid`` starts again. It registers under a new lease, and the
        controller handles the old registration's end first (as a death):
        a restarted broker never resumes leading in the epoch it led before,
        since it may have lost records of that epoch its followers hold."""
        rep = self.replicas[rid]
        if not rep.alive:
            if not self.bugs.resume_epoch_after_restart:
                self.expire(rid)
            rep.alive = True

    def tick(self, ms: int) -> None:
        self.now += ms

    def isr_propose(self, rid: int) -> None:
        rep = self.replicas[rid]
        if rep.alive and rep.leader is not None and rid not in self.pending_isr:
            change = rep.leader.propose_isr_change(self.now, rep.leo, self.live)
            if change is not None:
                self.pending_isr[rid] = change

    def isr_commit(self, rid: int) -> None:
        """The leader's CAS for its pending ISR change lands (or fails)."""
        change = self.pending_isr.pop(rid, None)
        rep = self.replicas[rid]
        if change is None or rep.leader is None or rep.leader.pending is not change:
            return
        st = self.state
        if st.leader == rid and st.leader_epoch == change.leader_epoch:
            new = change.apply(st)
            if self.cas(change.base_version, new):
                rep.leader.confirm_isr_change(change, self.state.version)
                self._leader_progress(rep)
                return
        rep.leader.abort_isr_change(change)

    # -------------------------------------------------------------- checker

    def check(self) -> None:
        reps = list(self.replicas.values())
        for rep in reps:
            LeaderEpochCache(rep.cache.entries())  # strictly increasing
            for o, rec in enumerate(rep.log):
                if rep.cache.epoch_for_offset(o) != rec.epoch:
                    raise Violation(f"r{rep.id}'s epoch cache {rep.cache} disagrees at {o}")
            if rep.hw < self.last_hw[rep.id] and self.check_loss:
                raise Violation(f"r{rep.id}'s high watermark went back to {rep.hw}")
            self.last_hw[rep.id] = rep.hw
        for i, a in enumerate(reps):
            for b in reps[i + 1 :]:
                low = min(a.hw, b.hw)
                if a.log[:low] != b.log[:low]:
                    raise Violation(f"r{a.id} and r{b.id} disagree below {low}: {a} {b}")
                for o in range(min(a.leo, b.leo) - 1, -1, -1):
                    if a.log[o] == b.log[o]:
                        if a.log[:o] != b.log[:o]:
                            raise Violation(f"log matching broken at {o}: {a} {b}")
                        break
        if self.check_loss:
            for rid in self.state.isr:
                log = self.replicas[rid].log
                for offset, value in self.acked.items():
                    if offset >= len(log) or log[offset].value != value:
                        raise Violation(
                            f"acknowledged {value} at {offset} lost on ISR member r{rid}: {self}"
                        )
        lead = self.replicas.get(self.state.leader)
        if (
            lead is not None
            and lead.leader is not None
            and lead.leader.leader_epoch == self.state.leader_epoch
        ):
            try:
                if self.bugs.serve_unestablished_hw:
                    served = lead.leader.high_watermark
                else:
                    served = lead.leader.served_high_watermark()
            except OffsetNotAvailableError:
                served = None
            if served is not None and self.check_loss:
                if served < self.served_max:
                    raise Violation(
                        f"served high watermark went back from {self.served_max} to {served}"
                    )
                self.served_max = served

    def heal(self, rounds: int = 60) -> None:
        """Restart everything, let every broker register and follow, until
        every replica is in sync (or give up after ``rounds``)."""
        ids = list(self.replicas)
        for _ in range(rounds):
            for r in ids:
                self.restart(r)
                self.sync(r)
            self.check()
            lid = self.state.leader
            for r in ids:
                if r != lid:
                    self.truncate(r)
                    self.fetch(r)
                self.flush(r)
                self.check()
            if lid != NO_LEADER:
                self.isr_propose(lid)
                self.isr_commit(lid)
            self.check()
            lead = self.replicas.get(lid)
            if (
                lead is not None
                and lead.leader is not None
                and set(self.state.isr) == set(ids)
                and all(r.log == lead.log for r in self.replicas.values())
                and lead.hw == lead.leo
            ):
                return
        raise Violation(f"replicas did not converge after healing: {self}")

    def final_check(self) -> None:
        self.heal()
        logs = {tuple(r.log) for r in self.replicas.values()}
        if len(logs) != 1:
            raise Violation(f"replica logs differ after healing: {self}")
        log = next(iter(logs))
        if self.check_loss:
            for offset, value in self.acked.items():
                if offset >= len(log) or log[offset].value != value:
                    raise Violation(f"acknowledged {value} at {offset} lost: {self}")


def replicate_round(c: Cluster) -> None:
    """The common path in one step: the leader takes a record, every replica
    reads the state, truncates if it must, fetches and syncs, and the leader
    settles its ISR."""
    ids = tuple(c.replicas)
    if c.state.online:
        c.produce(c.state.leader)
    for r in ids:
        c.sync(r)
        c.truncate(r)
        c.fetch(r)
        c.flush(r)
        c.check()
    for r in ids:
        c.isr_propose(r)
        c.isr_commit(r)


def random_walk(seed: int, *, steps: int = 60, bugs: Bugs | None = None) -> Cluster:
    """A seeded random walk over the same steps as the Hypothesis machine
    (checked after each one), ending with heal and the final check."""
    import random

    rnd = random.Random(seed)
    c = Cluster((1, 2, 3), bugs=bugs)
    for _ in range(steps):
        r = rnd.choice((1, 2, 3))
        op = rnd.randrange(11)
        if op == 0:
            c.produce(rnd.choice((r, c.state.leader)))
        elif op == 1:
            c.flush(r)
        elif op == 2:
            c.fetch(r, lose_response=rnd.random() < 0.3)
        elif op == 3:
            c.truncate(r)
        elif op == 4:
            c.sync(r)
        elif op == 5:
            kind = rnd.randrange(5)
            if kind < 2:
                c.crash(r, power=kind == 1)
            elif kind == 2:
                c.restart(r)
            elif kind == 3:
                c.expire(r)
            else:
                c.elect(rnd.choice((None, 1, 2, 3)))
        elif op == 6:
            c.tick(rnd.choice((10, 60, 150)))
        elif op == 7:
            c.isr_propose(r)
        elif op == 8:
            c.isr_commit(r)
        else:
            replicate_round(c)
        c.check()
    c.final_check()
    return c
