"""Every package directory is in pyproject.toml's hand-written package list.

broker/ and client/ are installed as tailrace.broker and tailrace.client
through [tool.setuptools.package-dir], so packages are listed by hand; a
package missing from the list still imports in the editable install the
developers use, and is silently left out of a wheel (tailrace.broker.cli
was: an installed `tailrace` command could not start).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, src in config["package-dir"].items():
        base = ROOT / src
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([name, *rel.parts]))
    assert "tailrace.broker.cli" in found
    assert found == listed
