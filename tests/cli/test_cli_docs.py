"""docs/operations.md and README.md work as printed.

Every ``$ command`` line in a ```console block of docs/operations.md runs, in
order, in a fresh directory against a fresh broker; the lines under it are
its expected output (stdout and stderr together, as a terminal shows them).
In expected output, a line that is only ``...`` stands for any number of
lines, and ``...`` inside a line for any text. ``tailrace broker`` commands
are started in the background on a free port instead (the others find it
through TAILRACE_BOOTSTRAP, as the guide says they may); a broker started
with --config gets free ports for the listeners of its file, and the
commands after it that name a documented port reach the real one.

The README's Python example runs as printed, against a broker with the
topic its instructions create; only the broker address is swapped for the
test broker's.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import ROOT, cli_env, run_cli
from harness import BrokerProcess

DOCS = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.S | re.M)


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    """[(command, expected output lines)] from every ```console block. A
    command ending in a here-document (``<<'EOF'``) takes the lines up to
    its terminator as part of the command."""
    steps: list[tuple[str, list[str]]] = []
    for block in blocks(text, "console"):
        heredoc = None
        for line in block.splitlines():
            if heredoc is not None:
                steps[-1] = (steps[-1][0] + "\n" + line, [])
                if line == heredoc:
                    heredoc = None
            elif line.startswith("$ "):
                steps.append((line[2:], []))
                m = re.search(r"<<'?(\w+)'?$", line)
                heredoc = m.group(1) if m else None
            else:
                assert steps, f"output before any command: {line!r}"
                steps[-1][1].append(line)
    return steps


def start_documented_broker(cmd: str, tmp_path: Path) -> tuple[BrokerProcess, dict[str, str]]:
    """Start a ``tailrace broker ...`` line in the background. Without
    --config it gets a free loopback port; with --config, the file's listener
    addresses get free ports (port 0) and the returned map tells the
    documented port of each listener the one it got, for the commands that
    follow to use."""
    args = shlex.split(cmd)[2:]
    data_dir = Path(args[args.index("--data-dir") + 1])
    args = args[: args.index("--data-dir")] + args[args.index("--data-dir") + 2 :]
    if "--config" not in args:
        return BrokerProcess(tmp_path / data_dir, *args).start(), {}
    config = tmp_path / args[args.index("--config") + 1]
    text = config.read_text()
    documented = re.findall(r'^address = "(.*):(\d+)"$', text, flags=re.M)
    ephemeral = config.with_name("ephemeral-ports-" + config.name)
    ephemeral.write_text(re.sub(r'^(address = ".*):\d+"$', r'\1:0"', text, flags=re.M))
    args[args.index("--config") + 1] = str(ephemeral)
    broker = BrokerProcess(tmp_path / data_dir, *args, listen=None, cwd=tmp_path).start()
    for _ in range(200):
        bound = re.findall(r"listening .*address=(\S+)", "\n".join(broker.log_lines))
        if len(bound) == len(documented):
            break
        time.sleep(0.05)
    ports = {
        port: address.rsplit(":", 1)[1]
        for (_, port), address in zip(documented, bound, strict=True)
    }
    return broker, ports


def expected_pattern(lines: list[str]) -> re.Pattern[str]:
    parts = []
    for line in lines:
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*".join(re.escape(p) for p in line.split("...")) + r"\n")
    return re.compile("".join(parts))


def test_expected_output_patterns():
    pat = expected_pattern(["a", "...", "b ... c"])
    assert pat.fullmatch("a\nb x c\n")
    assert pat.fullmatch("a\n1\n2\nb  c\n")
    assert not pat.fullmatch("a\nb c\nextra\n")
    assert not pat.fullmatch("b c\n")


def test_operations_walkthrough_runs_as_printed(tmp_path):
    steps = console_steps(DOCS.read_text())
    assert any(cmd.startswith("tailrace broker") for cmd, _ in steps)
    assert sum(cmd.startswith("tailrace consume") for cmd, _ in steps) >= 3
    env = cli_env()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    broker: BrokerProcess | None = None
    ports: dict[str, str] = {}
    try:
        for cmd, expected in steps:
            if cmd.startswith("tailrace broker") and "--check-config" not in cmd:
                if broker is not None:  # "stop the broker started earlier"
                    broker.kill()
                broker, ports = start_documented_broker(cmd, tmp_path)
                env["TAILRACE_BOOTSTRAP"] = broker.address
                continue
            for documented, actual in ports.items():
                cmd = re.sub(rf"(?<=:){documented}\b", actual, cmd)
            proc = subprocess.run(
                ["bash", "-c", cmd],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env=env,
                timeout=60,
                check=False,
            )
            out = proc.stdout.decode()
            assert proc.returncode == 0, f"{cmd}\n{out}"
            assert expected_pattern(expected).fullmatch(out), (
                f"$ {cmd}\n--- got:\n{out}--- expected:\n" + "\n".join(expected)
            )
    finally:
        if broker is not None:
            broker.kill()


def test_readme_example_runs_as_printed(tmp_path):
    text = README.read_text()
    (example,) = blocks(text, "python")
    assert "127.0.0.1:7420" in example
    assert "from tailrace.client import Producer, Consumer" in example
    # the README tells the reader to create the topic first, with the CLI
    (create,) = re.findall(r"tailrace (topics create \S+)", text)
    with BrokerProcess(tmp_path / "data") as broker:
        r = run_cli(*create.split(), bootstrap=broker.address)
        assert r.code == 0, r.err
        proc = subprocess.run(
            [sys.executable, "-c", example.replace("127.0.0.1:7420", broker.address)],
            capture_output=True,
            cwd=tmp_path,
            env=cli_env(),
            timeout=60,
            check=False,
        )
        # then "the same from the command line", from the repository root
        (cli_block,) = [b for b in blocks(text, "sh") if "consume" in b]
        shell = subprocess.run(
            ["bash", "-ec", cli_block],
            capture_output=True,
            cwd=ROOT,
            env=cli_env(broker.address),
            timeout=60,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    (printed,) = re.findall(r"this prints `(.*?)`", text)
    assert proc.stdout.decode() == printed + "\n"
    assert shell.returncode == 0, shell.stderr.decode()
    assert shell.stdout == b"hello, tailrace\nhello again\n"
