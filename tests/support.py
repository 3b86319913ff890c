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
        reason = f"{variable} is not set; scripts/fetch-qemu-trees.sh fetches the real QEMU {major} tree"
        if os.environ.get("CI"):  # .ci/run fetches every tree: a skip there would hide a broken fetch
            pytest.fail(reason)
        pytest.skip(reason)
    path = Path(value)
    if not (path / "VERSION").is_file():
        pytest.skip(f"{variable}={value} is not a QEMU tree")
    return path


def usable_kvm() -> None:
    """Skip (fail in CI) unless /dev/kvm can create a VM on this host, and the host is x86_64."""
    import fcntl
    import platform

    why = None
    if platform.machine() != "x86_64":
        why = f"prove runs x86 guests and this host is {platform.machine()}"
    else:
        try:
            fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        except OSError as error:
            why = f"/dev/kvm is not usable: {error.strerror}"
        else:
            try:
                os.close(fcntl.ioctl(fd, 0xAE01, 0))  # KVM_CREATE_VM
            except OSError as error:
                why = f"KVM_CREATE_VM fails: {error.strerror}"
            finally:
                os.close(fd)
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must run the KVM tests")
        pytest.skip(why)
