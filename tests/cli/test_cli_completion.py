"""``tailrace completion``: the bash script, run by bash, completes as it should."""

from __future__ import annotations

import subprocess

import pytest
from cli_helpers import call_main

from tailrace.broker.cli.completion_cmd import ZSH_PREAMBLE, _subparsers
from tailrace.broker.cli.main import build_parser

#: COMP_WORDS / COMP_CWORD as bash sets them, then the function, then the answers
_DRIVER = """
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_tailrace
for answer in "${COMPREPLY[@]}"; do printf '%s\\n' "$answer"; done
complete -p tailrace
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory):
    r = call_main(["completion", "bash"])
    assert r.code == 0
    path = tmp_path_factory.mktemp("completion") / "tailrace.bash"
    path.write_bytes(r.out)
    return path


def complete(script, cwd, *words: str) -> list[str]:
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", _DRIVER, "driver", str(script), "tailrace", *words],
        capture_output=True,
        cwd=cwd,
        text=True,
        timeout=30,
        check=True,
    )
    *answers, registered = proc.stdout.splitlines()
    assert registered == "complete -o filenames -F _tailrace tailrace"
    assert proc.stderr == ""
    return answers


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["to"], ["topics"]),
        (["--debug", "c"], ["consume", "cluster", "completion"]),
        (["topics", ""], ["create", "list", "describe", "alter", "delete"]),
        (
            ["topics", "describe", "t", "--"],
            [
                "--help",
                "--json",
                "--bootstrap",
                "--tls",
                "--ca-file",
                "--cert-file",
                "--key-file",
                "--sasl-mechanism",
                "--username",
                "--password-file",
            ],
        ),
        (["topics", "list", "--sasl-mechanism", ""], ["SCRAM-SHA-256", "PLAIN"]),
        (["acls", ""], ["add", "remove", "list"]),
        (["consume", "t", "--from"], ["--from-beginning", "--from-time"]),
        (["consume", "t", "--format", ""], ["value", "json"]),
        (["produce", "t", "--acks", ""], ["0", "1", "all"]),
        (["consume", "t", "--bootstrap", ""], []),  # free text: nothing offered
        (["produce", "t", "--file", "in"], ["input.txt"]),
        (["dump-log", "00"], ["00000000000000000000.log"]),
        (["broker", "--log-level", "W"], ["WARNING"]),
    ],
)
def test_bash_completes(script, tmp_path, words, expected):
    (tmp_path / "input.txt").write_text("x\n")
    (tmp_path / "00000000000000000000.log").write_bytes(b"")
    assert complete(script, tmp_path, *words) == expected


def test_every_registered_command_is_offered(script, tmp_path):
    names = list(_subparsers(build_parser()))
    assert "topics" in names
    assert complete(script, tmp_path, "") == names


def test_zsh_runs_the_same_function_through_bashcompinit(script):
    r = call_main(["completion", "zsh"])
    assert r.code == 0
    assert r.text == ZSH_PREAMBLE + script.read_text()
