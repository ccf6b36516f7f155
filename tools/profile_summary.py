"""Summarise a py-spy raw profile of ``tailrace bench``: where each process spends its time.

    .venv/bin/py-spy record --subprocesses --gil --threads -r 250 --format raw \\
        -o /tmp/prof.txt -- .venv/bin/tailrace bench produce --spawn-broker --flush none
    .venv/bin/python tools/profile_summary.py /tmp/prof.txt

With ``--gil`` py-spy keeps only samples of the thread holding the GIL, so a
process's sample count over (seconds x rate) is how busy its interpreter was,
and the shares below are shares of its Python CPU time. The bench runs three
kinds of process: the bench itself (the consumer in consume and e2e modes),
``tailrace.broker.bench.worker`` (one per producer) and the spawned broker.

For each process: samples per thread, then functions by self time (the leaf
frame) and by inclusive time, line numbers folded. Samples taken while a
module was being imported (process start-up) count in the totals but are
left out of the function tables.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

_LINE = re.compile(r":\d+\)")
_TID = re.compile(r"\s*\(0x[0-9a-f]+\)|\s*\(\d+\)")


def _importing(frames: list[str]) -> bool:
    return any("<frozen importlib" in fr for fr in frames)


def role(process_frame: str) -> str:
    if "bench.worker" in process_frame:
        return "producer worker"
    if "cli broker" in process_frame:
        return "broker"
    return "bench (consumer)"


def summarise(path: str, top: int) -> str:
    total: collections.Counter[str] = collections.Counter()
    startup: collections.Counter[str] = collections.Counter()
    threads: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    leaf: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            procs = [fr for fr in frames if fr.startswith("process ")]
            who = role(procs[-1]) if procs else "?"
            names = [fr for fr in frames if fr.startswith("thread ")]
            thread = _TID.sub("", names[-1]) if names else "thread ?"
            code = [
                _LINE.sub(")", fr) for fr in frames if not fr.startswith(("thread ", "process "))
            ]
            total[who] += n
            threads[who][thread] += n
            if _importing(code):
                startup[who] += n
            elif code:
                leaf[who][code[-1]] += n
                for fr in set(code):
                    incl[who][fr] += n
    out = []
    for who, n in total.most_common():
        share = 100 * startup[who] / n
        out.append(f"== {who}: {n} samples ({share:.1f}% importing modules at start-up)")
        for thread, c in threads[who].most_common():
            out.append(f"   {100 * c / n:5.1f}%  {thread}")
        out.append("   -- self --")
        out += [f"   {100 * c / n:5.1f}%  {fr}" for fr, c in leaf[who].most_common(top)]
        out.append("   -- inclusive --")
        out += [f"   {100 * c / n:5.1f}%  {fr}" for fr, c in incl[who].most_common(top)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("profile", help="py-spy --format raw output")
    p.add_argument("--top", type=int, default=15, help="functions listed per table")
    args = p.parse_args(argv)
    sys.stdout.write(summarise(args.profile, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
