"""The corpus under fixtures/broken/: each case with its expected exit code and message.

A case is a directory with expected.toml. `base` names a fixture tree that
is copied first; `remove` deletes files from it; the case's own files are
laid over it (symbolic links kept); `truncate` cuts a file after a marker.
`stderr` (each line, in order, and no other), `stdout` and `note` hold one
line or a list of them.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import pytest

from support import FIXTURES, run_cli

BROKEN = FIXTURES / "broken"
CASES = sorted(p for p in BROKEN.iterdir() if (p / "expected.toml").is_file())


def _build(case: Path, tmp_path: Path) -> tuple[Path, dict[str, object]]:
    expected = tomllib.loads((case / "expected.toml").read_text())
    tree = tmp_path / case.name
    base = expected.get("base")
    if isinstance(base, str):
        shutil.copytree(FIXTURES / base, tree, symlinks=True)
    else:
        tree.mkdir()
    for relative in expected.get("remove", []):  # type: ignore[attr-defined]
        (tree / relative).unlink()
    shutil.copytree(case, tree, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns("expected.toml"))
    truncate = expected.get("truncate")
    if isinstance(truncate, dict):
        target = tree / truncate["file"]
        text = target.read_text()
        assert truncate["after"] in text
        target.write_text(text[: text.index(truncate["after"]) + len(truncate["after"])])
    return tree, expected


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_broken_input(case: Path, tmp_path: Path) -> None:
    tree, expected = _build(case, tmp_path)
    result = run_cli("audit", str(tree))
    assert "Traceback" not in result.stderr
    assert result.returncode == expected["exit"], result.stderr or result.stdout[-400:]
    stderr = _lines(expected, "stderr")
    assert len(result.stderr.splitlines()) == len(stderr), result.stderr
    for line, wanted in zip(result.stderr.splitlines(), stderr, strict=True):
        assert wanted in line
    for wanted in _lines(expected, "stdout") + _lines(expected, "note"):
        assert wanted in result.stdout


def _lines(expected: dict[str, object], key: str) -> list[str]:
    """A key of expected.toml that holds one line or a list of them."""
    value = expected.get(key, [])
    return [value] if isinstance(value, str) else [str(v) for v in value]  # type: ignore[attr-defined]


def test_very_large_generated_file_is_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(FIXTURES / "qemu-mini", tree)
    (tree / "target/i386/cpu.c").write_bytes(b"/* generated */\nint x;\n" * 400_000)
    result = run_cli("audit", str(tree))
    assert result.returncode == 1
    assert result.stderr == "vmstate-guard: warning: target/i386/cpu.c: larger than 8 MiB, likely generated; skipped\n"


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_file_names_that_are_not_utf8_are_skipped(cache: bool, tmp_path: Path) -> None:
    # Not in the corpus: git and some filesystems (APFS) refuse such names.
    tree = tmp_path / "qemu"
    shutil.copytree(FIXTURES / "qemu-mini", tree)
    description = b'static const VMStateDescription vmstate_x = {\n    .name = "x",\n};\n'
    try:
        (tree / os.fsdecode(b"hw/bad\xff.c")).write_bytes(description)
        (tree / os.fsdecode(b"hw/dir\xfe")).mkdir()
        (tree / os.fsdecode(b"hw/dir\xfe/edu.c")).write_bytes(description)
    except (OSError, UnicodeError):
        pytest.skip("this filesystem refuses file names that are not UTF-8")
    options = [] if cache else ["--no-cache"]
    for _ in range(2 if cache else 1):  # the second run from the stat data of the first
        result = run_cli("audit", str(tree), *options, env={"VMSTATE_GUARD_CACHE": str(tmp_path / "cache")})
        assert result.returncode == 1, result.stderr
        assert result.stderr.splitlines() == [
            r"vmstate-guard: warning: hw/bad\xff.c: file name is not valid UTF-8; skipped",
            r"vmstate-guard: warning: hw/dir\xfe/edu.c: file name is not valid UTF-8; skipped",
        ]
        assert r"hw/bad\xff.c:0: note: skipped: file name is not valid UTF-8" in result.stdout


def test_file_vanishing_after_listing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from analyzer.audit import audit

    tree = tmp_path / "qemu"
    shutil.copytree(FIXTURES / "qemu-mini", tree)
    original = os.open

    def vanish(name: str, flags: int, *args: int) -> int:
        if name.endswith("pc_piix.c"):
            Path(name).unlink()
        return original(name, flags, *args)

    monkeypatch.setattr(os, "open", vanish)
    # Read through a descriptor, a file cannot vanish halfway; gone before it
    # is opened, it is a file this tree does not have.
    tree_read = audit(tree).analysis.tree
    assert "hw/i386/pc_piix.c" not in [f.path for f in tree_read.files]
    assert not tree_read.skipped


def test_unreadable_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests run as root in CI, where chmod 000 does not stop a read: simulate it.
    from analyzer.audit import audit
    from analyzer.errors import InputError

    original = os.open
    denied = ["xen-emu.c", "kvm/kvm.c"]

    def deny(name: str, flags: int, *args: int) -> int:
        if name.endswith(tuple(denied)):
            raise PermissionError(13, "Permission denied")
        return original(name, flags, *args)

    tree = tmp_path / "qemu"
    shutil.copytree(FIXTURES / "qemu-mini", tree)
    (tree / "target/i386/kvm/xen-emu.c").write_text("int x;\n")
    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(InputError, match=r"target/i386/kvm/kvm.c: cannot read: Permission denied"):
        audit(tree)
    denied.remove("kvm/kvm.c")
    assert ("target/i386/kvm/xen-emu.c", "cannot read: Permission denied") in audit(tree).analysis.tree.skipped


def test_internal_errors_are_one_line(tmp_path: Path) -> None:
    # A crash in the analyzer must still end in one line, exit 3, no traceback.
    script = tmp_path / "crash.py"
    script.write_text(
        "import sys\nimport analyzer.audit\n"
        "def boom(*a, **k):\n    raise RuntimeError('simulated bug')\n"
        "analyzer.audit.audit = boom\n"
        "from analyzer.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(script), "audit", str(FIXTURES / "qemu-mini")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 3
    assert done.stderr.startswith("vmstate-guard: internal error: RuntimeError: simulated bug")
    assert "Traceback" not in done.stderr
