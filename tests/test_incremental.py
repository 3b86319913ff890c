"""Work that follows the change: lean start-up, git blob ids as keys, incremental `check`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import analyzer
from support import MINI, REPO, git

# The analyzer these tests import: a checkout's (a worktree's, by PYTHONPATH), else the installed one.
_SOURCE_PATH = {"PYTHONPATH": str(REPO)} if Path(analyzer.__file__).resolve().parent.parent == REPO.resolve() else {}


def _modules_after(tmp_path: Path, *argv: str) -> set[str]:
    """The modules a whole `vmstate-guard` run imported, `sys.modules` at its end."""
    probe = (
        "import sys, analyzer.cli\n"
        "try:\n"
        f"    analyzer.cli.main({list(argv)!r})\n"
        "finally:\n"
        "    sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO.parent,
        env={"VMSTATE_GUARD_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", **_SOURCE_PATH},
        check=False,
    )
    return set(done.stderr.rsplit("MODULES ", 1)[1].split())


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in ("networkx", "jinja2", "pygments", "markupsafe")}


def _prove_modules(modules: set[str]) -> set[str]:
    """prove's modules; its package alone (analyzer/prove/__init__.py) holds what --help names."""
    return {m for m in modules if m.startswith("analyzer.prove.")}


def test_audit_json_and_check_import_no_graph_or_html_library(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    audited = _modules_after(tmp_path, "audit", str(repo), "--format", "json", "-o", str(tmp_path / "a.json"))
    assert json.loads((tmp_path / "a.json").read_text())["findings"]  # the run did its work
    assert _heavy(audited) == set()
    assert "analyzer.reports.json_report" in audited
    assert not {"analyzer.reports.sarif", "analyzer.reports.html", "analyzer.reports.text"} & audited
    # prove's machinery (the build, the firmware, QEMU and QMP) is for prove alone:
    # the command line takes --cpu's default from the package, not from prove.qemu.
    assert _prove_modules(audited) == set()
    checked = _modules_after(tmp_path, "check", str(repo), "--base", "HEAD", "-o", str(tmp_path / "c.txt"))
    assert (tmp_path / "c.txt").is_file()
    assert _heavy(checked) == set()
    assert _prove_modules(checked) == set()
    # A check after a one-file change, the tree known to the cache: one file to
    # parse, in this process, so no worker processes and none of their modules.
    machine = repo / "target/i386/machine.c"
    machine.write_text(machine.read_text().replace("        &vmstate_xcr0,\n", ""))
    again = _modules_after(tmp_path, "check", str(repo), "--base", "HEAD", "-j", "2", "-o", str(tmp_path / "d.txt"))
    assert "new finding" in (tmp_path / "d.txt").read_text()  # the run did its work
    assert not {"multiprocessing", "ctypes", "socket", "zipfile"} & again
    # Nor dataclasses (and inspect): its records cost ten times less to define as
    # named tuples. Nor tomllib: the profiles were parsed by the runs before. Nor
    # traceback, for a worker's error.
    assert not {"dataclasses", "inspect", "tomllib", "traceback"} & again
    # The formats that need them still get them.
    html = _modules_after(tmp_path, "audit", str(repo), "--format", "html", "-o", str(tmp_path / "a.html"))
    assert {"jinja2", "pygments"} <= html
    graph = _modules_after(tmp_path, "graph", str(repo), "-o", str(tmp_path / "g.json"))
    assert "networkx" in graph


def test_help_and_version_import_no_analysis(tmp_path: Path) -> None:
    # They list commands and targets only: no rule, cache, fact model or parser behind them.
    for argv in (["--version"], ["--help"], ["audit", "--help"]):
        modules = _modules_after(tmp_path, *argv)
        assert "analyzer.profile" in modules  # the run did get to list the targets
        assert not {"analyzer.rules", "analyzer.cache", "analyzer.facts.model", "tree_sitter"} & modules, argv


# A description no registered section reaches: a VG006 finding in whatever file holds it.
_UNREGISTERED = b"""\
#include "migration/vmstate.h"

const VMStateDescription vmstate_odd_name = {
    .name = "odd-name",
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(count, OddState),
        VMSTATE_END_OF_LIST()
    }
};
"""

# Names `git ls-tree` quotes without -z.
_QUOTED_NAMES = ("hw/d\u00e9vice.c", "hw/tab\tname.c", "hw/new\nline.c", 'hw/quote".c')


def _repository(tmp_path: Path) -> Path:
    repo = tmp_path / "qemu"
    shutil.copytree(MINI, repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    return repo


def _check(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from support import run_cli

    return run_cli("check", str(repo), *args, "--no-cache", "--format", "json")


def _vg006(result: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(f["location"]["file"] for f in json.loads(result.stdout)["findings"] if f["rule"] == "VG006")


def test_check_reads_files_whose_names_git_quotes(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    for name in _QUOTED_NAMES:
        (repo / name).write_bytes(_UNREGISTERED.replace(b"odd_name", name.encode().hex().encode()))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "odd names")
    # Unchanged working tree: nothing new (the base once lacked those files).
    unchanged = _check(repo, "--base", "HEAD")
    assert unchanged.returncode == 0, unchanged.stdout
    # And a revision that adds them reports each.
    added = _check(repo, "--base", "HEAD~1", "--head", "HEAD")
    assert added.returncode == 1
    assert _vg006(added) == sorted(_QUOTED_NAMES)


def test_check_skips_submodules(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    # A submodule as git records it: a gitlink in the tree, a checkout with a .git file on disk.
    sub = repo / "hw/vendored"
    sub.mkdir()
    (sub / ".git").write_text("gitdir: ../../.git/modules/vendored\n")
    (sub / "dev.c").write_bytes(_UNREGISTERED)
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},hw/vendored")
    git(repo, "commit", "-qm", "submodule")
    result = _check(repo, "--base", "HEAD")
    assert result.returncode == 0, result.stdout
    assert _vg006(_check(repo, "--base", "HEAD~1", "--head", "HEAD")) == []
    from analyzer.git import RevisionReader
    from analyzer.tree import UnusableFileError

    reader = RevisionReader(repo, "HEAD")
    assert not reader.has_directory("hw/vendored")
    with pytest.raises(UnusableFileError, match="not a regular file"):
        reader.read("hw/vendored")


class _CoarseStat:
    """A stat result with whole-second times, as a 1 s-granularity filesystem gives (ext2)."""

    def __init__(self, real: os.stat_result) -> None:
        self._real = real
        self.st_mtime_ns = real.st_mtime_ns // 10**9 * 10**9
        self.st_ctime_ns = real.st_ctime_ns // 10**9 * 10**9

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


def _aged_copy(tmp_path: Path, source: Path = MINI) -> Path:
    """A copy of `source` last modified an hour ago: its files are known by their stat data (not racy)."""
    tree = tmp_path / "qemu"
    shutil.copytree(source, tree)
    hour_ago = time.time_ns() - 3600 * 10**9
    for path in tree.rglob("*"):
        os.utime(path, ns=(hour_ago, hour_ago))
    return tree


def test_a_revision_lists_no_directory_the_analysis_does_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analyzer.git
    from analyzer.audit import audit
    from analyzer.git import RevisionReader
    from analyzer.reports import renderer

    repo = _repository(tmp_path)
    (repo / "tests/unit").mkdir(parents=True)
    (repo / "tests/unit/test-vmstate.c").write_text("static const VMStateDescription vmstate_test = {};\n")
    (repo / "roms/firmware").mkdir(parents=True)
    (repo / "roms/firmware/boot.c").write_text("int boot;\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tests and roms")
    listed: list[list[str]] = []
    real = analyzer.git._Listing._ls_tree

    def spy(self: object, paths: list[str], recursive: bool) -> str:
        listed.append(paths)
        return real(self, paths, recursive)  # type: ignore[arg-type]

    monkeypatch.setattr(analyzer.git._Listing, "_ls_tree", spy)
    result = audit(RevisionReader(repo, "HEAD"))
    assert listed and not any(p.startswith(("tests", "roms")) for paths in listed for p in paths)
    assert len(listed) == 2  # the top level, then what is read below it, in one call
    assert renderer("json")(result) == renderer("json")(audit(repo))  # as the working tree gives
    # Asked for, a file there is listed and read all the same.
    reader = RevisionReader(repo, "HEAD")
    assert reader.read("roms/firmware/boot.c") == b"int boot;\n"
    assert reader.has_directory("tests/unit") and reader.blob_id("tests/unit/test-vmstate.c")


def test_a_directory_whose_name_git_would_read_as_pathspec_magic_is_listed(tmp_path: Path) -> None:
    from analyzer.git import RevisionReader

    repo = _repository(tmp_path)
    (repo / ":x").mkdir()
    (repo / ":x/dev.c").write_text("static const VMStateDescription vmstate_dev = {};\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a directory named :x")
    reader = RevisionReader(repo, "HEAD")
    assert ":x/dev.c" in reader.c_files()
    assert reader.read(":x/dev.c") == (repo / ":x/dev.c").read_bytes()


def test_a_tree_in_a_subdirectory_of_its_repository_is_read_at_a_revision(tmp_path: Path) -> None:
    from analyzer.audit import audit
    from analyzer.git import RevisionReader
    from analyzer.reports import renderer

    repo = tmp_path / "fork"
    shutil.copytree(MINI, repo / "qemu")
    (repo / "README").write_text("a fork's own files beside the tree\n")
    (repo / "target").mkdir()  # the repository's own target/, not the tree's
    (repo / "target/other.c").write_text("int other;\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "fork")
    reader = RevisionReader(repo / "qemu", "HEAD")
    assert reader.has_directory("target") and reader.has_directory("target/i386")
    assert reader.read("VERSION") == (MINI / "VERSION").read_bytes()
    assert "target/i386/machine.c" in reader.c_files() and "target/other.c" not in reader.c_files()
    assert reader.read("README") is None
    assert renderer("json")(audit(reader)) == renderer("json")(audit(repo / "qemu"))


def test_a_same_length_edit_in_the_stamps_tick_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: _CoarseStat(real_stat(*a, **k)))
    tree = _aged_copy(tmp_path)
    cache = FactsCache(tmp_path / "cache")
    audit(tree, cache=cache)
    machine = tree / "target/i386/machine.c"
    original = machine.read_text()
    edited = original.replace("&vmstate_xcr0,", " " * len("&vmstate_xcr0,"))
    assert len(edited) == len(original) and edited != original
    for _ in range(3):  # the two writes and the run between them must share a second
        time.sleep(1 - time.time() % 1 + 0.01)
        start = int(time.time())
        machine.write_text(original)
        audit(tree, cache=cache)  # stamps the tree with machine.c as it is now
        machine.write_text(edited)  # same size, same (coarse) times, same inode
        if int(time.time()) == start:
            break
    result = audit(tree, cache=cache)
    assert "cpu/xcr0" not in {f.subsection for f in result.findings if f.rule == "VG001"}
    json = renderer("json")
    assert json(result) == json(audit(tree))


def _units_called(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """The labels of the units `analyzer.audit.<name>` is called for from now on, in order."""
    import analyzer.audit

    called: list[str] = []
    original = getattr(analyzer.audit, name)

    def spy(profile: object, *args: object) -> object:
        called.append(profile.label)  # type: ignore[attr-defined]
        return original(profile, *args)

    monkeypatch.setattr(analyzer.audit, name, spy)
    return called


def _units_joined(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The labels of the units joined from now on, in order (not those found in the cache)."""
    return _units_called(monkeypatch, "_analyse_unit")


def test_a_change_joins_again_only_the_units_whose_files_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    tree = tmp_path / "qemu"
    shutil.copytree(MINI.parent / "target-arm", tree)
    shutil.copytree(MINI, tree, dirs_exist_ok=True)  # i386 and arm, each a CPU unit
    cache = FactsCache(tmp_path / "cache")
    first = audit(tree, cache=cache)
    assert [a.profile.label for a in first.analyses][:1] == ["arm"]
    joined = _units_joined(monkeypatch)
    machine = tree / "target/i386/machine.c"
    machine.write_text(machine.read_text().replace("        &vmstate_xcr0,\n", ""))
    result = audit(tree, cache=cache)
    assert joined == ["i386"]
    json = renderer("json")
    assert json(result) == json(audit(tree))
    joined.clear()
    arm = tree / "target/arm/machine.c"
    arm.write_text(arm.read_text() + "/* edited */\n")
    result = audit(tree, cache=cache)
    assert joined == ["arm"]  # not i386, listed after it
    json = renderer("json")
    assert json(result) == json(audit(tree))


def test_an_analysed_revision_is_answered_by_its_tree_id_without_listing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analyzer.git
    from analyzer.audit import audit, audit_findings
    from analyzer.cache import FactsCache
    from analyzer.config import Config
    from analyzer.git import RevisionReader

    repo = _repository(tmp_path)
    cache = FactsCache(tmp_path / "cache")
    expected = audit(RevisionReader(repo, "HEAD")).findings
    assert audit_findings(RevisionReader(repo, "HEAD"), cache=cache) == expected
    git(repo, "commit", "-q", "--allow-empty", "-m", "same tree, another commit")

    def no_listing(*args: object) -> None:
        raise AssertionError("the revision was listed")

    monkeypatch.setattr(analyzer.git, "_Listing", no_listing)
    assert audit_findings(RevisionReader(repo, "HEAD"), cache=cache) == expected  # the new commit's tree is known
    assert audit(RevisionReader(repo, "HEAD"), cache=cache).findings == expected  # its analyses too
    # Other rule settings are another key: with VG001 off, no VG001 comes back from the cache.
    assert any(f.rule == "VG001" for f in expected)
    without = Config(disabled=frozenset({"VG001"}))
    found = audit_findings(RevisionReader(repo, "HEAD"), (), without, cache=cache)
    assert found == tuple(f for f in expected if f.rule != "VG001")


def test_a_change_in_a_unit_rewrites_no_snapshot_and_finds_the_tree_wide_part_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analyzer.audit
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    tree = _aged_copy(tmp_path)
    cache_dir = tmp_path / "cache"
    audit(tree, cache=FactsCache(cache_dir))

    def written(kind: str) -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in (cache_dir / kind).rglob("*") if p.is_file()}

    trees, tree_wide = written("trees"), written("tree-wide")
    assert trees and tree_wide
    json = renderer("json")
    # A needed() function changed, its descriptions and every line number not:
    # the tree-wide part is the one stored, its rules not run again.
    machine = tree / "target/i386/machine.c"
    machine.write_text(machine.read_text().replace("env.xcr0 != 1;", "env.xcr0 != 2;"))
    with monkeypatch.context() as patched:
        patched.setattr(analyzer.audit, "_tree_wide", None)  # called: a TypeError
        result = audit(tree, cache=FactsCache(cache_dir))
    assert written("tree-wide") == tree_wide
    assert json(result) == json(audit(tree))
    # A subsection unlisted: the tree-wide rules read that, so the part is made again.
    machine.write_text(machine.read_text().replace("        &vmstate_xcr0,\n", ""))
    result = audit(tree, cache=FactsCache(cache_dir))
    assert len(written("tree-wide")) == len(tree_wide) + 1
    assert written("trees") == trees  # nothing the snapshot knows changed: machine.c is the unit's
    assert json(result) == json(audit(tree))
    assert json(audit(tree, cache=FactsCache(cache_dir))) == json(result)  # read back from its parts


def _inventory_extracted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths whose inventory facts are extracted from now on, by a batch or by the audit itself."""
    import analyzer.audit
    import analyzer.facts.batch

    extracted: list[str] = []

    def spying(original: Any) -> Any:
        def spy(path: str, data: bytes, profile: object, role: str | None = None, *rest: object) -> object:
            if role in ("inventory", "references"):
                extracted.append(path)
            return original(path, data, profile, role, *rest)

        return spy

    for module in (analyzer.facts.batch, analyzer.audit):
        monkeypatch.setattr(module, "extract_file", spying(module.extract_file))
    return extracted


def _loader_audited(tmp_path: Path) -> tuple[Path, Path]:
    """An aged copy of qemu-loader (a CPU and four devices), audited once into a cache: (tree, cache directory)."""
    from analyzer.audit import audit
    from analyzer.cache import FactsCache

    tree = _aged_copy(tmp_path, MINI.parent / "qemu-loader")
    audit(tree, cache=FactsCache(tmp_path / "cache"))
    return tree, tmp_path / "cache"


def test_descriptions_moved_in_a_unit_rerun_the_tree_wide_rules_on_the_cached_inventory_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analyzer.audit
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    tree, cache_dir = _loader_audited(tmp_path)
    # A line more at the top of machine.c: every description of the unit moves,
    # so the tree-wide rules run again, on the devices' part as it was cached.
    machine = tree / "target/i386/machine.c"
    machine.write_text("/* a line more */\n" + machine.read_text())
    with monkeypatch.context() as patched:
        patched.setattr(analyzer.audit, "inventory_part", None)  # made again: a TypeError
        extracted = _inventory_extracted(patched)
        result = audit(tree, cache=FactsCache(cache_dir))
    assert extracted == []
    json = renderer("json")
    assert json(result) == json(audit(tree))
    assert any(f.rule == "VG006" for f in result.findings)  # the tree-wide rules did find


def test_a_device_changed_reads_the_other_devices_facts_from_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    tree, cache_dir = _loader_audited(tmp_path)
    foo = tree / "hw/misc/foo.c"
    foo.write_text(foo.read_text().replace('.name = "fo0/clock"', '.name = "foo/clock"'))
    extracted = _inventory_extracted(monkeypatch)
    result = audit(tree, cache=FactsCache(cache_dir))
    assert extracted == ["hw/misc/foo.c"]
    json = renderer("json")
    assert json(result) == json(audit(tree))
    assert not any(f.rule == "VG003" and "fo0" in f.message for f in result.findings)  # the change was read


def test_a_snapshot_without_a_files_facts_has_it_extracted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.audit import audit
    from analyzer.cache import Deferred, FactsCache, key_of
    from analyzer.inventory import TreeSnapshot
    from analyzer.reports import renderer

    tree, cache_dir = _loader_audited(tmp_path)
    cache = FactsCache(cache_dir)
    key = key_of(("snapshot", os.path.realpath(tree)))
    snapshot = cache.load_entry("trees", key, TreeSnapshot)
    assert snapshot is not None and "hw/misc/bar.c" in snapshot.facts.get()
    cut = {path: known for path, known in snapshot.facts.get().items() if path != "hw/misc/bar.c"}
    cache.store_entry("trees", key, snapshot._replace(facts=Deferred(cut)))
    foo = tree / "hw/misc/foo.c"
    foo.write_text(foo.read_text() + "\n/* changed */\n")
    extracted = _inventory_extracted(monkeypatch)
    result = audit(tree, cache=cache)
    assert sorted(extracted) == ["hw/misc/bar.c", "hw/misc/foo.c"]
    json = renderer("json")
    assert json(result) == json(audit(tree))
    again = cache.load_entry("trees", key, TreeSnapshot)
    assert again is not None and "hw/misc/bar.c" in again.facts.get()  # and kept for the next run


def test_a_change_in_the_cpu_vmstate_code_alone_does_not_join_its_devices_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    tree = tmp_path / "qemu"
    shutil.copytree(MINI.parent / "device-kvmclock", tree)  # the i386 CPU and its kvmclock device
    cache = FactsCache(tmp_path / "cache")
    assert [a.profile.label for a in audit(tree, cache=cache).analyses] == ["i386", "i386/kvmclock"]
    joined = _units_joined(monkeypatch)
    json = renderer("json")
    machine = tree / "target/i386/machine.c"
    machine.write_text("/* a line more */\n" + machine.read_text())
    result = audit(tree, cache=cache)
    assert joined == ["i386"]  # the device borrows the CPU's KVM code, not its VMState code
    assert json(result) == json(audit(tree))
    joined.clear()
    kvm = tree / "target/i386/kvm/kvm.c"  # what the device's put path calls into
    kvm.write_text(kvm.read_text() + "/* edited */\n")
    result = audit(tree, cache=cache)
    assert joined == ["i386", "i386/kvmclock"]
    assert json(result) == json(audit(tree))


def test_the_inventory_takes_the_stat_data_the_stamps_took(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.tree import DirectoryReader

    tree = _aged_copy(tmp_path)
    cache = FactsCache(tmp_path / "cache")
    audit(tree, cache=cache)
    machine = tree / "target/i386/machine.c"
    machine.write_text(machine.read_text() + "/* edited */\n")  # racy: the tree's stamp is not taken
    stats: list[str] = []
    real_stat = os.stat

    def counting(path: str, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(str(path))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting)
    reader = DirectoryReader(tree)
    audit(reader, cache=cache)
    first = audit(reader, cache=cache)  # the same reader again: stat data taken afresh
    files = [p for p in stats if p.endswith((".c", ".h", ".inc"))]
    repeated = [p for p in set(files) if files.count(p) > 2]  # more than once a run
    assert not repeated, repeated[:3]
    assert first.findings == audit(tree).findings


def test_a_damaged_tree_wide_part_is_replaced(tmp_path: Path) -> None:
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    tree = _aged_copy(tmp_path)
    cache_dir = tmp_path / "cache"
    json = renderer("json")
    expected = json(audit(tree, cache=FactsCache(cache_dir)))
    (part,) = (p for p in (cache_dir / "tree-wide").rglob("*") if p.is_file())
    part.write_bytes(part.read_bytes()[:100])  # cut short
    assert json(audit(tree, cache=FactsCache(cache_dir))) == expected
    assert len(part.read_bytes()) > 100  # written again, sound
    assert json(audit(tree, cache=FactsCache(cache_dir))) == expected


def test_a_cached_unit_is_reported_without_unpickling_its_detail(tmp_path: Path) -> None:
    # The bulk of a unit (its files' facts, its capability solution) is read by
    # the unit rules when it is joined, and by the HTML report: not by the others.
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    tree = tmp_path / "qemu"
    shutil.copytree(MINI.parent / "target-arm", tree)
    shutil.copytree(MINI, tree, dirs_exist_ok=True)
    cache = FactsCache(tmp_path / "cache")
    fresh = audit(tree, cache=cache)
    machine = tree / "target/i386/machine.c"
    machine.write_text(machine.read_text().replace("        &vmstate_xcr0,\n", ""))
    result = audit(tree, cache=cache)  # arm from the cache, i386 joined again
    cached = result.analyses[0]
    assert cached.profile.label == "arm"
    assert cached.facts == fresh.analyses[0].facts and cached.handoffs == fresh.analyses[0].handoffs
    result = audit(tree, cache=cache)  # both from the cache
    for format in ("json", "text", "sarif", "github"):
        assert renderer(format)(result)
    assert not any(a.detail.loaded for a in result.analyses)  # never unpickled
    assert renderer("json")(result) == renderer("json")(audit(tree))
    assert result.analyses[0].capabilities.probes  # and there when asked for


def test_unit_findings_are_those_of_the_rules_on_the_joined_analysis(tmp_path: Path) -> None:
    # Found once as a unit is joined, before the tree's inventory joins it: the
    # unit rules must find the same in the analysis the reports get.
    from analyzer.audit import audit
    from analyzer.rules import RULES

    result = audit(MINI)
    unit_rules = [rule for rule in RULES if rule.scope == "unit"]
    for analysis in result.analyses:
        again = [f for rule in unit_rules for f in rule.check(analysis)]
        assert [f.fingerprint for f in analysis.unit_findings] == [f.fingerprint for f in again]
    assert any(f.rule == "VG001" for a in result.analyses for f in a.unit_findings)


def test_a_unit_found_whole_is_not_looked_up_file_by_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.profile import load_units
    from analyzer.reports import renderer
    from analyzer.tree import DirectoryReader, open_tree

    tree = tmp_path / "qemu"
    shutil.copytree(MINI.parent / "target-arm", tree)
    shutil.copytree(MINI, tree, dirs_exist_ok=True)
    cache = FactsCache(tmp_path / "cache")
    audit(tree, cache=cache)
    looked_up: list[str] = []
    real = FactsCache.has_facts

    def spy(self: FactsCache, extraction: str, path: str, role: str, data: bytes) -> bool:
        looked_up.append(path)
        return real(self, extraction, path, role, data)

    monkeypatch.setattr(FactsCache, "has_facts", spy)
    machine = tree / "target/i386/machine.c"
    machine.write_text(machine.read_text().replace("        &vmstate_xcr0,\n", ""))
    result = audit(tree, cache=cache, jobs=2)
    i386 = {f.path for f in open_tree(DirectoryReader(tree), load_units("i386")[0]).files}
    assert "target/i386/machine.c" in looked_up
    assert set(looked_up) <= i386  # arm's unit came whole from the cache: none of its files asked
    assert renderer("json")(result) == renderer("json")(audit(tree))


def test_a_change_in_the_cpu_vmstate_code_solves_that_code_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The KVM code's capability solution and put/get paths come from the cache
    # (the i386 KVM files are as they were); machine.c's functions extend it.
    import analyzer.audit
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    cache = FactsCache(tmp_path / "cache")
    audit(tree, cache=cache)
    json = renderer("json")
    machine = tree / "target/i386/machine.c"
    machine.write_text(machine.read_text().replace("env.xcr0 != 1;", "env.xcr0 != 2 && env.xcr0 != 3;"))
    with monkeypatch.context() as patched:
        patched.setattr(analyzer.audit, "_kvm_side", None)  # called: a TypeError
        result = audit(tree, cache=cache)
    assert json(result) == json(audit(tree))
    kvm = tree / "target/i386/kvm/kvm.c"
    kvm.write_text(kvm.read_text() + "\nstatic int unused_helper(void) { return 0; }\n")
    solved = _units_called(monkeypatch, "_kvm_side")
    result = audit(tree, cache=cache)
    assert solved == ["i386"]  # its KVM code changed: solved again
    assert json(result) == json(audit(tree))
