"""A job cancelled while files are parsed: no worker process outlives the main one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import MINI, REPO

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc"),
    pytest.mark.skipif(os.nice(0) == 19, reason="the inventory's workers are told apart by their nice 19"),
]


def _slow_tree(tmp_path: Path) -> Path:
    """A tree whose 150 device files take the workers seconds to parse."""
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    description = (
        'static const VMStateDescription vmstate_d{i} = {{\n    .name = "d{i}",\n'
        "    .fields = (const VMStateField[]) {{\n        VMSTATE_UINT32(r{i}, DevState),\n"
        "        VMSTATE_END_OF_LIST()\n    }}\n}};\n"
    )
    text = "".join(description.format(i=i) for i in range(400))
    for n in range(150):
        (tree / "hw" / f"dev{n}.c").write_text(text)
    return tree


def _inventory_workers(pid: int) -> set[int]:
    """The children of `pid` that extract the inventory: those at nice 19 (the
    units' workers may be done before a signal comes)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and int(fields[16]) == 19:
                found.add(int(entry.name))
    return found


def _start(tree: Path) -> tuple[subprocess.Popen[str], set[int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "audit", str(tree), "--jobs", "2", "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO.parent,
    )
    deadline = time.monotonic() + 60
    while len(workers := _inventory_workers(process.pid)) < 2:
        assert process.poll() is None and time.monotonic() < deadline, "no workers started"
        time.sleep(0.05)
    return process, workers


def _gone(pids: set[int], within: float = 5) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_sigterm_stops_the_workers_and_says_so(tmp_path: Path) -> None:
    process, workers = _start(_slow_tree(tmp_path))
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=30)  # returns once no process holds the pipes
        assert process.returncode == 128 + signal.SIGTERM
        assert stderr == "vmstate-guard: terminated\n"
        assert _gone(workers)
    finally:
        _reap(process, workers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_main_process_killed_outright(tmp_path: Path) -> None:
    process, workers = _start(_slow_tree(tmp_path))
    process.kill()
    process.wait()
    try:
        assert _gone(workers)
    finally:
        _reap(process, workers)


def _reap(process: subprocess.Popen[str], workers: set[int]) -> None:
    """Kill what a failing test leaves behind: the main process and its workers."""
    process.kill()
    for pid in workers:
        if _state(pid) != "Z":
            os.kill(pid, signal.SIGKILL)
    process.communicate()
