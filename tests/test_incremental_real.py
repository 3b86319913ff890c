"""Incremental `check` on real QEMU trees gives, byte for byte, what a run without cache gives.

Each tree is copied (its source files only) into a git repository; a series
of edits (a post_load removed, a guard added, a device file touched, a file
renamed, a file deleted) is checked against the previous commit from the
working tree and between commits, with the cache and without.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from analyzer.audit import AuditResult, audit, audit_findings
from analyzer.cache import FactsCache
from analyzer.findings import Finding
from analyzer.git import RevisionReader
from analyzer.reports import renderer
from analyzer.selection import introduced
from analyzer.tree import DirectoryReader, TreeReader
from support import git, real_tree

# What the analysis never reads (inventory.py's exclusions), left out of the copy to keep it quick.
_NOT_READ = ("tests", "roms", "subprojects", "scripts", "contrib", "docs", "linux-user", "bsd-user", "linux-headers")


def _copy(source: Path, repo: Path) -> None:
    def ignore(directory: str, names: list[str]) -> list[str]:
        top = Path(directory) == source
        return [
            n
            for n in names
            if (top and n in _NOT_READ)
            or (not (Path(directory) / n).is_dir() and not n.endswith((".c", ".h", ".inc")) and n != "VERSION")
        ]

    shutil.copytree(source, repo, ignore=ignore, symlinks=True)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "release")


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: {old!r}"
    path.write_text(text.replace(old, new, 1))


def _edits(repo: Path) -> list[tuple[str, Callable[[], None]]]:
    machine, kvm = repo / "target/i386/machine.c", repo / "target/i386/kvm/kvm.c"
    e1000 = repo / "hw/net/e1000.c"

    def touch_device() -> None:
        stat = e1000.stat()
        os.utime(e1000, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
        _replace(repo / "hw/i386/kvm/clock.c", "\n", "\n/* touched */\n")

    def rename() -> None:
        git(repo, "mv", "hw/net/e1000.c", "hw/net/e1000-renamed.c")

    def delete() -> None:
        git(repo, "rm", "-q", "hw/i386/kvm/clock.c")

    return [
        ("post_load removed", lambda: _replace(machine, "    .post_load = nested_state_post_load,\n", "")),
        (
            "guard added",
            lambda: _replace(
                kvm,
                "kvm_msr_entry_add(cpu, MSR_PAT, env->pat);",
                "if (has_msr_smi_count) { kvm_msr_entry_add(cpu, MSR_PAT, env->pat); }",
            ),
        ),
        ("device file touched", touch_device),
        ("file renamed", rename),
        ("file deleted", delete),
    ]


def _report(head: AuditResult, base: AuditResult | tuple[Finding, ...], base_label: str = "") -> str:
    if isinstance(base, AuditResult):
        base, base_label = base.findings, base.analysis.tree.label
    result = introduced(head, base, base_label)
    return renderer("json")(result) + renderer("text")(result)


@pytest.mark.parametrize("major", ["10", "7"])
def test_incremental_check_equals_a_run_without_cache(major: str, tmp_path: Path) -> None:
    repo = tmp_path / "qemu"
    _copy(real_tree(major), repo)
    cache = FactsCache(tmp_path / "cache")

    def run(reader: TreeReader, cached: bool) -> AuditResult:
        return audit(reader, (), None, None, cache if cached else None, 2)

    def base(rev: str) -> tuple[tuple[Finding, ...], str]:
        """The base as check reads it: its findings alone, cached by its git tree."""
        reader = RevisionReader(repo, rev)
        return audit_findings(reader, (), None, None, cache, 2), reader.label

    audit(DirectoryReader(repo), cache=cache, jobs=2)  # the cache as a previous run left it
    uncached_base = run(RevisionReader(repo, "HEAD"), cached=False)
    for name, edit in _edits(repo):
        edit()
        # The working tree against HEAD, as the pre-commit hook runs it.
        uncached_head = run(DirectoryReader(repo), cached=False)
        expected = _report(uncached_head, uncached_base)
        incremental = _report(run(DirectoryReader(repo), True), *base("HEAD"))
        assert incremental == expected, name
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", name)
        # Two commits, read from git's objects.
        between = _report(run(RevisionReader(repo, "HEAD"), True), *base("HEAD~1"))
        assert between == expected, name
        uncached_base = uncached_head
    # The edits did change what is reported (the comparison is not vacuous).
    first = _report(run(RevisionReader(repo, "HEAD~4"), False), run(RevisionReader(repo, "HEAD~5"), False))
    assert '"subsection": "cpu/nested_state"' in first
