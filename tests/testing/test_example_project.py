"""docs/testing.md's example project, run as a user runs it: ``pytest`` in a
directory of its own, the fixtures coming from the installed distribution's
pytest11 entry point (the project has no conftest), plainly and with
pytest-xdist; and its unittest example with ``python -m unittest``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"

#: loaded with -p: records which worker ran a test against which broker, so
#: that the run shows each xdist worker had a broker of its own. It is not
#: part of the example (and defines no tailrace fixture).
RECORDER = """
import os
import pytest

@pytest.fixture(autouse=True)
def _record_broker(tailrace_broker):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    out = os.path.join(os.environ["EXAMPLE_RECORDS"], worker)
    with open(out, "a") as f:
        f.write(f"{tailrace_broker.bootstrap} {tailrace_broker.data_dir}\\n")
"""


def doc_files(kind: str) -> dict[str, str]:
    """The ``<!-- example-<kind>: NAME -->`` code blocks of docs/testing.md."""
    text = DOC.read_text()
    pattern = re.compile(rf"<!-- example-{kind}: (\S+) -->\n```python\n(.*?)```", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(text)}


def user_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TAILRACE_"))}
    env.pop("PYTHONPATH", None)
    env["TMPDIR"] = str(tmp)  # the brokers' temporary directories, checked below
    return env


def run_project(project: Path, *args: str) -> tuple[str, dict[str, set[str]], Path]:
    tmp = project.parent / f"tmp{len(list(project.parent.glob('tmp*')))}"
    records = project.parent / f"records{len(list(project.parent.glob('records*')))}"
    tmp.mkdir()
    records.mkdir()
    env = user_env(tmp)
    env["EXAMPLE_RECORDS"] = str(records)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "recorder", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    seen = {p.name: set(p.read_text().splitlines()) for p in records.iterdir()}
    return out.stdout, seen, tmp


@pytest.fixture
def project(tmp_path: Path) -> Path:
    files = doc_files("project")
    assert set(files) == {"orders.py", "test_orders.py"}
    project = tmp_path / "project"
    project.mkdir()
    for name, text in files.items():
        (project / name).write_text(text)
    (project / "recorder.py").write_text(RECORDER)
    return project


@pytest.mark.slow
def test_example_project_with_pytest(project: Path):
    stdout, seen, tmp = run_project(project, "-q")
    assert re.search(r"\b3 passed\b", stdout), stdout
    assert list(seen) == ["main"]
    assert len(seen["main"]) == 1  # one session broker for every test
    assert not list(tmp.glob("tailrace-*"))  # every broker removed its directory


@pytest.mark.slow
def test_example_project_with_xdist_gives_each_worker_a_broker(project: Path):
    stdout, seen, tmp = run_project(project, "-q", "-n", "2")
    assert re.search(r"\b3 passed\b", stdout), stdout
    assert sorted(seen) == ["gw0", "gw1"]
    brokers = [next(iter(lines)) for lines in seen.values()]
    assert all(len(lines) == 1 for lines in seen.values())
    assert len(set(brokers)) == 2  # two addresses, two data directories
    assert {b.split()[1].split("/")[-2].split("-")[1] for b in brokers} == {"gw0", "gw1"}
    assert not list(tmp.glob("tailrace-*"))


def test_unittest_example(tmp_path: Path):
    ((name, text),) = doc_files("unittest").items()
    (tmp_path / name).write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "unittest", "-v", name.removesuffix(".py")],
        cwd=tmp_path,
        env=user_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "test_round_trip" in out.stderr
    assert re.search(r"^OK$", out.stderr, re.M), out.stderr
    assert not list(tmp_path.glob("tailrace-*"))
