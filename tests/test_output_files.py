"""`-o FILE` and standard output: what FILE is survives the write, and a write
that fails is an input error with nothing left behind."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support import MINI, REPO, run_cli


def _device(path: Path, minor: int) -> Path:
    """A character device like /dev/null (minor 3) or /dev/full (minor 7), made
    in tmp_path: a test must never risk the real ones."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except (PermissionError, AttributeError):
        pytest.skip("making device nodes needs root (as CI runs, where the bug bit)")
    return path


def test_a_device_is_written_not_replaced(tmp_path: Path) -> None:
    null = _device(tmp_path / "null", 3)
    result = run_cli("audit", str(MINI), "-o", str(null))
    assert result.returncode == 1, result.stderr
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_full_device_is_an_input_error_and_stays_a_device(tmp_path: Path) -> None:
    full = _device(tmp_path / "full", 7)
    result = run_cli("audit", str(MINI), "-o", str(full))
    assert result.returncode == 2
    assert result.stderr == f"vmstate-guard: error: {full}: cannot write: No space left on device\n"
    assert stat.S_ISCHR(full.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_a_fifo_is_written_to_its_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run_cli("audit", str(MINI), "-o", str(fifo))
    reader.join(timeout=10)
    assert result.returncode == 1, result.stderr
    assert not reader.is_alive(), "the FIFO's reader got no writer"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert b"[VG001]" in received[0]


def test_standard_output_named_as_a_file_is_standard_output(tmp_path: Path) -> None:
    if not Path("/proc/self/fd/1").exists():
        pytest.skip("no /proc/self/fd")
    link = tmp_path / "stdout"  # what /dev/stdout is, without touching /dev
    link.symlink_to("/proc/self/fd/1")
    plain = run_cli("audit", str(MINI)).stdout
    assert run_cli("audit", str(MINI), "-o", str(link)).stdout == plain  # a pipe
    log = tmp_path / "log.txt"
    log.write_text("earlier\n")
    with log.open("a") as appended:  # `>> log.txt`: appended to, as without -o
        subprocess.run(
            [sys.executable, "-m", "analyzer", "audit", str(MINI), "-o", str(link)],
            stdout=appended,
            cwd=REPO.parent,
            check=False,
        )
    assert log.read_text() == "earlier\n" + plain
    assert link.is_symlink()


def test_a_link_to_a_file_stays_a_link_and_a_file_keeps_its_mode(tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("old\n")
    report.chmod(0o640)
    link = tmp_path / "latest.txt"
    link.symlink_to(report.name)
    assert run_cli("audit", str(MINI), "-o", str(link)).returncode == 1
    assert link.is_symlink()
    assert "[VG001]" in report.read_text()
    assert stat.S_IMODE(report.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.txt", "report.txt"]


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "{tree}", "-o", "{tree}/report.txt"],
        ["graph", "{tree}", "-o", "{tree}/target/graph.json"],
        ["check", "{tree}", "--base-tree", "{tree}", "-o", "{tree}/new.txt"],
    ],
    ids=["audit", "graph", "check"],
)
def test_output_into_the_analysed_tree_is_refused(tmp_path: Path, args: list[str]) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    before = sorted(tree.rglob("*"))
    result = run_cli(*(a.format(tree=tree) for a in args))
    assert result.returncode == 2
    assert result.stderr.endswith("inside the analysed tree, which vmstate-guard never writes to; choose another -o\n")
    assert sorted(tree.rglob("*")) == before


def test_a_failed_write_leaves_no_temporary_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A full filesystem, simulated: the temporary file is created, its write fails.
    from analyzer.errors import InputError
    from analyzer.output import write_output

    class Full:
        def __init__(self, descriptor: int, *args: object, **kwargs: object) -> None:
            self.descriptor = descriptor

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            os.close(self.descriptor)

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "report.txt").write_text("old\n")
    monkeypatch.setattr(os, "fdopen", Full)
    with pytest.raises(InputError, match=r"report\.txt: cannot write: No space left on device"):
        write_output("new\n", tmp_path / "report.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.txt"]
    assert (tmp_path / "report.txt").read_text() == "old\n"


@pytest.mark.parametrize("args", [["audit", str(MINI)], ["--list-rules"], ["explain", "VG001"]])
def test_standard_output_on_a_full_device_is_an_input_error(tmp_path: Path, args: list[str]) -> None:
    full = Path("/dev/full")
    if not full.exists() or not stat.S_ISCHR(full.stat().st_mode):
        full = _device(tmp_path / "full", 7)
    with full.open("w") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "analyzer", *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO.parent,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr == "vmstate-guard: error: standard output: cannot write: No space left on device\n"
