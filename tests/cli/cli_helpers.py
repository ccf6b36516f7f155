"""Running ``tailrace`` in tests: as a real subprocess, or main() in-process.

Subprocesses are for what is about the process (exit codes, stdin, signals,
the one-line error on stderr); in-process calls are for the bulk of the
output checks, since each interpreter start costs about 0.3 s.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from tailrace.broker.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8")


def cli_env(bootstrap: str | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TAILRACE_BOOTSTRAP", None)
    if bootstrap is not None:
        env["TAILRACE_BOOTSTRAP"] = bootstrap
    env.update(extra)
    return env


def tailrace_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tailrace.broker.cli", *args]


def run_cli(
    *args: str,
    bootstrap: str | None = None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> Result:
    """``tailrace ARGS`` as a subprocess; stdin is empty unless given."""
    proc = subprocess.run(
        tailrace_cmd(*args),
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env=env if env is not None else cli_env(bootstrap),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def call_main(argv: Sequence[str], stdin: bytes = b"") -> Result:
    """main(argv) in this process with stdin, stdout and stderr captured."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    err = io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
            out.flush()
    finally:
        sys.stdin = old_stdin
    return Result(code, raw.getvalue(), err.getvalue())
