"""Cyclic garbage collection paused around a batch's decode or build.

Decoding a batch makes an object per record (msgpack's tuples, the Kafka
codec's records) in one C call. None of them is part of a cycle and
reference counting frees them, but each is a tracked allocation: thousands
of them trigger collections, and a collection of the older generations
scans every object the process holds. Measured: Kafka-format decode 0.5 ->
2.7 µs a record in a process holding many objects (kafka.py); with the
native consumer's decode (native.columns) a 100 B consume of values gave
0.9-1.5 M records/s, 1.8-3.1 M with collection paused (docs/benchmarks.md,
"Collections in the decoder, send_many's reservations, the sync round's
stages").
"""

from __future__ import annotations

import gc

__all__ = ["no_collection"]


class no_collection:  # lower case: used as a statement, ``with no_collection():``
    """Cyclic garbage collection off for a block, restored after (left off
    if it was off: another thread's or the application's choice stands)."""

    __slots__ = ("was",)

    def __enter__(self) -> None:
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was:
            gc.enable()
