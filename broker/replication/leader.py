"""What a partition's leader decides: fencing, high watermark, ISR changes, acks.

One :class:`LeaderState` per partition this broker leads, created when the
broker becomes leader in an epoch (also when it is re-elected: a new epoch
is a new LeaderState, KAFKA-7164) and dropped when the epoch changes. It
does no I/O and reads no clock: the caller passes the log end offset it
counts (``leader_leo``: with flush ``sync``, the offset fsynced so far) and
the time (``now_ms``, monotonic).

High watermark (issue 16 rule 3, Kafka's ``Partition.maybeIncrementLeaderHW``)
    The lowest log end offset over the ISR, leader included, counting a
    follower only from its first fetch in this epoch (until then its offset
    is unknown and the watermark stays). It only ever increases. While an
    ISR change is in flight the *larger* set counts: a shrink only once its
    CAS succeeded (KIP-497), an expansion at once.

Established high watermark (KIP-207 / KAFKA-2334, the point the brief pins
on KAFKA-7164)
    A new leader starts from the watermark it had as a follower, which lags
    the old leader's by up to a fetch round. Until its watermark reaches the
    start offset of its own epoch it cannot tell which of its records were
    committed, and the watermark it holds may be below one already served:
    :meth:`LeaderState.served_high_watermark` raises OffsetNotAvailableError
    until then (ListOffsets latest, Metadata), while fetches simply read
    below :attr:`LeaderState.high_watermark`.

Fencing (KIP-320)
    Requests from followers (fetch, OffsetForLeaderEpoch) carry the leader
    epoch the sender believes current: older is FENCED_LEADER_EPOCH, newer
    UNKNOWN_LEADER_EPOCH.

ISR (issue 16 rule 4)
    A follower leaves when it has not caught up to the leader's log end for
    ``replica_lag_time_max_ms``; one rejoins when it has reached both the
    high watermark and the start of the leader's epoch and its broker is
    live and registered. :meth:`LeaderState.propose_isr_change` returns an
    :class:`IsrChange`; the caller writes it to the cluster store with a CAS
    and then calls :meth:`LeaderState.confirm_isr_change` (success) or
    :meth:`LeaderState.abort_isr_change` (failure: re-read the state, this
    broker may have lost the leadership). One change is in flight at a time.

acks=all (issue 16 rule 5)
    Refused before the append with NOT_ENOUGH_REPLICAS when the committed
    ISR is smaller than ``min_insync_replicas``; complete once the high
    watermark covers the batch, with NOT_ENOUGH_REPLICAS_AFTER_APPEND if the
    ISR shrank below the minimum meanwhile (the record is stored: an
    ambiguous outcome for the client).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Literal

from tailrace.client.errors import (
    FencedLeaderEpochError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    OffsetNotAvailableError,
    UnknownLeaderEpochError,
)

from .election import ReplicaState, S
from .epochs import UNDEFINED_EPOCH, EpochEndOffset, LeaderEpochCache

__all__ = [
    "UNKNOWN_OFFSET",
    "FollowerProgress",
    "IsrChange",
    "LeaderState",
    "check_leader_epoch",
    "diverging_epoch",
]

#: A follower's log end offset before its first fetch in this epoch.
UNKNOWN_OFFSET = -1


def check_leader_epoch(current_leader_epoch: int, leader_epoch: int) -> None:
    """Fence a request that carries ``current_leader_epoch`` against this
    replica's ``leader_epoch`` (KIP-320). UNDEFINED_EPOCH (-1) means the
    sender did not say (an old client) and passes."""
    if current_leader_epoch in (UNDEFINED_EPOCH, leader_epoch):
        return
    if current_leader_epoch < leader_epoch:
        raise FencedLeaderEpochError(
            f"leader epoch {current_leader_epoch} is stale: the current one is {leader_epoch}"
        )
    raise UnknownLeaderEpochError(
        f"leader epoch {current_leader_epoch} is newer than this replica's {leader_epoch}"
    )


def diverging_epoch(
    cache: LeaderEpochCache, last_fetched_epoch: int, fetch_offset: int, log_end_offset: int
) -> EpochEndOffset | None:
    """KIP-320 check of a follower fetch: the follower's last batch before
    ``fetch_offset`` was written in ``last_fetched_epoch``. When this log's
    ``last_fetched_epoch`` ends before ``fetch_offset`` (or the epoch is not
    the one this log has there), the follower has diverged: return this
    log's answer for that epoch (the follower truncates with it, as after an
    OffsetForLeaderEpoch, and its fetch position does not count). None when
    the fetch is consistent or carries no epoch."""
    if last_fetched_epoch == UNDEFINED_EPOCH or fetch_offset == 0:
        return None
    answer = cache.end_offset_for(last_fetched_epoch, log_end_offset)
    if answer.epoch != last_fetched_epoch or answer.end_offset < fetch_offset:
        return answer
    return None


@dataclass(slots=True)
class FollowerProgress:
    """What the leader knows of one follower in this epoch."""

    #: the follower's log end offset (its last fetch offset), or UNKNOWN_OFFSET
    log_end_offset: int = UNKNOWN_OFFSET
    #: last time the follower had caught up to the leader's log end (ms)
    last_caught_up_ms: int = 0
    last_fetch_ms: int = 0
    #: the leader's log end offset at the previous fetch
    last_fetch_leader_leo: int = UNKNOWN_OFFSET


@dataclass(frozen=True, slots=True)
class IsrChange:
    """A proposed ISR, to write with a CAS on ``base_version``: the state
    to write is :meth:`apply` of the state read at that revision."""

    kind: Literal["shrink", "expand"]
    new_isr: tuple[int, ...]
    #: followers leaving (shrink) or joining (expand)
    replicas: tuple[int, ...]
    leader_epoch: int
    base_version: int

    def apply(self, state: S) -> S:
        """``state`` (read at ``base_version``) with the new ISR."""
        if state.leader_epoch != self.leader_epoch:
            raise ValueError(f"{state} is not epoch {self.leader_epoch}: the change is stale")
        return replace(state, isr=self.new_isr)


class LeaderState:
    """Decisions of the leader of one partition in one leader epoch.

    ``state`` is the partition state the CAS that made this broker leader
    wrote and ``version`` the store revision it has (the CAS of an ISR change
    compares it); ``epoch_start_offset`` the log end offset when it took over (the
    caller also assigns ``(state.leader_epoch, epoch_start_offset)`` in the
    log's epoch cache and makes that durable before the first append);
    ``high_watermark`` the watermark the broker had (its checkpoint, or the
    one it held as a follower).
    """

    def __init__(
        self,
        state: ReplicaState,
        *,
        version: int,
        replica_id: int,
        epoch_start_offset: int,
        high_watermark: int,
        now_ms: int,
        replica_lag_time_max_ms: int,
        min_insync_replicas: int,
    ) -> None:
        if state.leader != replica_id:
            raise ValueError(f"broker {replica_id} is not the leader in {state}")
        if high_watermark > epoch_start_offset:
            raise ValueError(
                f"high watermark {high_watermark} above the log end {epoch_start_offset}"
            )
        self.replica_id = replica_id
        self.leader_epoch = state.leader_epoch
        self.epoch_start_offset = epoch_start_offset
        self.replica_lag_time_max_ms = replica_lag_time_max_ms
        self.min_insync_replicas = min_insync_replicas
        self._replicas = state.replicas
        self._isr = state.isr
        self._version = version
        self._pending: IsrChange | None = None
        self._hw = high_watermark
        self.followers: dict[int, FollowerProgress] = {
            r: FollowerProgress(last_caught_up_ms=now_ms if r in state.isr else 0)
            for r in state.replicas
            if r != replica_id
        }

    # ------------------------------------------------------------ reading

    @property
    def isr(self) -> tuple[int, ...]:
        """The committed ISR (what the cluster store holds)."""
        return self._isr

    @property
    def version(self) -> int:
        return self._version

    @property
    def pending(self) -> IsrChange | None:
        return self._pending

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """The ISR the high watermark counts: the committed one, plus the
        followers of an expansion in flight (a shrink in flight does not
        count yet)."""
        p = self._pending
        if p is not None and p.kind == "expand":
            return p.new_isr
        return self._isr

    @property
    def high_watermark(self) -> int:
        """Reads stop below this offset."""
        return self._hw

    @property
    def established(self) -> bool:
        """Whether the watermark reached the start of this leader's epoch."""
        return self._hw >= self.epoch_start_offset

    def served_high_watermark(self) -> int:
        """The watermark to report (ListOffsets latest, Metadata). Raises
        OffsetNotAvailableError until it is established (module docstring)."""
        if not self.established:
            raise OffsetNotAvailableError(
                f"the new leader's high watermark {self._hw} is below the start "
                f"{self.epoch_start_offset} of epoch {self.leader_epoch}"
            )
        return self._hw

    # ------------------------------------------------------------ fencing

    def check_epoch(self, current_leader_epoch: int) -> None:
        check_leader_epoch(current_leader_epoch, self.leader_epoch)

    def offset_for_epoch(
        self,
        cache: LeaderEpochCache,
        log_end_offset: int,
        requested_epoch: int,
        current_leader_epoch: int,
    ) -> EpochEndOffset:
        """Answer a follower's OffsetForLeaderEpoch (fenced first)."""
        self.check_epoch(current_leader_epoch)
        return cache.end_offset_for(requested_epoch, log_end_offset)

    # --------------------------------------------------- follower fetches

    def on_follower_fetch(
        self,
        replica_id: int,
        fetch_offset: int,
        current_leader_epoch: int,
        now_ms: int,
        leader_leo: int,
        leader_counted_offset: int | None = None,
    ) -> bool:
        """Record a follower's fetch at ``fetch_offset`` (its log end, made
        durable as its topic's flush mode says before it sent it).
        ``leader_leo`` is the leader's log end; ``leader_counted_offset`` the
        part of it that counts for the high watermark (flush ``sync``: what
        is fsynced; default: all of it). Raises the fencing errors (nothing
        recorded), and ValueError for a replica not assigned here or a fetch
        offset above ``leader_leo`` (the caller answers OFFSET_OUT_OF_RANGE).
        Check :func:`diverging_epoch` first: a diverged fetch must not be
        recorded. Returns whether the high watermark advanced."""
        self.check_epoch(current_leader_epoch)
        f = self.followers.get(replica_id)
        if f is None:
            raise ValueError(f"broker {replica_id} is not a follower of this partition")
        if fetch_offset > leader_leo:
            raise ValueError(f"fetch offset {fetch_offset} above the log end {leader_leo}")
        # Kafka's Replica.updateFetchState: caught up if it reached the log end
        # now, or the log end of its previous fetch (it was then caught up as
        # of that fetch's time)
        if fetch_offset >= leader_leo:
            f.last_caught_up_ms = max(f.last_caught_up_ms, now_ms)
        elif f.last_fetch_leader_leo != UNKNOWN_OFFSET and fetch_offset >= f.last_fetch_leader_leo:
            f.last_caught_up_ms = max(f.last_caught_up_ms, f.last_fetch_ms)
        f.log_end_offset = fetch_offset
        f.last_fetch_ms = now_ms
        f.last_fetch_leader_leo = leader_leo
        return self.update_high_watermark(
            leader_leo if leader_counted_offset is None else leader_counted_offset
        )

    def update_high_watermark(self, leader_leo: int) -> bool:
        """Advance the watermark to the lowest log end offset over the
        maximal ISR (the leader's counted ``leader_leo`` included); never
        lower it. Call it after each append (flush ``none``/``interval``) or
        sync (``sync``) of the leader's log, and after an ISR change.
        Returns whether it advanced."""
        low = leader_leo
        for r in self.maximal_isr:
            if r == self.replica_id:
                continue
            leo = self.followers[r].log_end_offset
            if leo < low:  # UNKNOWN_OFFSET holds the watermark
                low = leo
        if low > self._hw:
            self._hw = low
            return True
        return False

    # ------------------------------------------------------------------ ISR

    def out_of_sync(self, now_ms: int, leader_leo: int) -> tuple[int, ...]:
        """ISR followers that have not caught up for ``replica_lag_time_max_ms``."""
        lag = self.replica_lag_time_max_ms
        out = []
        for r in self._isr:
            if r == self.replica_id:
                continue
            f = self.followers[r]
            if f.log_end_offset != leader_leo and now_ms - f.last_caught_up_ms > lag:
                out.append(r)
        return tuple(out)

    def can_join(self, replica_id: int, eligible: Collection[int]) -> bool:
        """Whether a follower outside the ISR may rejoin: its broker is live
        and registered (in ``eligible``), and it reached the high watermark
        and the start of this epoch."""
        f = self.followers.get(replica_id)
        if f is None or replica_id in self._isr or replica_id not in eligible:
            return False
        return f.log_end_offset >= self._hw and f.log_end_offset >= self.epoch_start_offset

    def propose_isr_change(
        self, now_ms: int, leader_leo: int, eligible: Collection[int]
    ) -> IsrChange | None:
        """The next ISR change, or None (none needed, or one in flight).
        Shrinks come first. The change is pending until confirmed."""
        if self._pending is not None:
            return None
        change = None
        leaving = self.out_of_sync(now_ms, leader_leo)
        if leaving:
            new_isr = tuple(r for r in self._isr if r not in leaving)
            change = IsrChange("shrink", new_isr, leaving, self.leader_epoch, self._version)
        else:
            joining = tuple(
                r for r in self._replicas if r not in self._isr and self.can_join(r, eligible)
            )
            if joining:
                new_isr = tuple(r for r in self._replicas if r in self._isr or r in joining)
                change = IsrChange("expand", new_isr, joining, self.leader_epoch, self._version)
        self._pending = change
        return change

    def confirm_isr_change(self, change: IsrChange, new_version: int) -> None:
        """The CAS writing ``change`` succeeded at ``new_version``: the new
        ISR counts. Call :meth:`update_high_watermark` next (a shrink may let
        the watermark advance)."""
        if change is not self._pending:
            raise ValueError("not the ISR change in flight")
        self._pending = None
        self._isr = change.new_isr
        self._version = new_version

    def abort_isr_change(self, change: IsrChange) -> None:
        """The CAS failed: the committed ISR stays. Re-read the partition
        state: if its epoch moved on, this LeaderState is finished."""
        if change is self._pending:
            self._pending = None

    def apply_state(self, state: ReplicaState, version: int) -> None:
        """The cluster store changed this partition's ISR in the same epoch
        (the controller removed a dead follower); ``version`` is the new
        revision. Not for epoch changes."""
        if state.leader_epoch != self.leader_epoch or state.leader != self.replica_id:
            raise ValueError(f"{state} is another epoch: make a new LeaderState")
        self._isr = state.isr
        self._version = version
        self._pending = None

    # ---------------------------------------------------------------- acks

    def check_append(self, acks: int) -> None:
        """Before appending: refuse acks=all (-1) with NOT_ENOUGH_REPLICAS
        when the committed ISR is below ``min_insync_replicas``."""
        if acks == -1 and len(self._isr) < self.min_insync_replicas:
            raise NotEnoughReplicasError(
                f"{len(self._isr)} in-sync replica(s) {self._isr}, "
                f"min_insync_replicas is {self.min_insync_replicas}"
            )

    def acks_all_done(self, required_offset: int) -> bool:
        """Whether an acks=all append ending before ``required_offset``
        (its last offset + 1) is complete: False while the watermark is
        below it; then True, or NOT_ENOUGH_REPLICAS_AFTER_APPEND raised when
        the committed ISR fell below the minimum meanwhile."""
        if self._hw < required_offset:
            return False
        if len(self._isr) < self.min_insync_replicas:
            raise NotEnoughReplicasAfterAppendError(
                f"stored, but {len(self._isr)} in-sync replica(s) {self._isr} are below "
                f"min_insync_replicas {self.min_insync_replicas}"
            )
        return True
