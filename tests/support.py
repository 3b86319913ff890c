from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
MINI = FIXTURES / "qemu-mini"
OLD_LAYOUT = FIXTURES / "qemu-mini-old-layout"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m analyzer` the way a user would, from outside the repo."""
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args],
        capture_output=True,
        text=True,
        cwd=REPO.parent,
        env={**os.environ, **(env or {})},
        check=False,
    )


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity, independent of the machine's config."""
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(repo),
        },
    ).stdout


def real_tree(major: str) -> Path:
    """The real QEMU tree named by VMSTATE_GUARD_QEMU_<major>, or skip."""
    variable = f"VMSTATE_GUARD_QEMU_{major}"
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set; scripts/fetch-qemu-trees.sh fetches the real QEMU {major} tree")
    path = Path(value)
    if not (path / "VERSION").is_file():
        pytest.skip(f"{variable}={value} is not a QEMU tree")
    return path
