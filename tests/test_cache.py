"""The per-file facts cache: reused when nothing changed, never trusted blindly."""

from __future__ import annotations

import hashlib
import json
import multiprocessing.process
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import analyzer.audit
from analyzer.audit import audit
from analyzer.cache import FactsCache, _digest_tree
from analyzer.reports import renderer
from support import MINI, run_cli


def _json(result: analyzer.audit.AuditResult) -> str:
    return renderer("json")(result)


def _count_extractions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import analyzer.facts.batch

    calls: list[str] = []
    original = analyzer.facts.batch.extract_file

    def counting(path: str, *args: object, **kwargs: object) -> object:
        calls.append(path)
        return original(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(analyzer.facts.batch, "extract_file", counting)
    return calls


def test_unchanged_tree_reads_every_file_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FactsCache(tmp_path / "cache")
    cold = audit(MINI, cache=cache)
    calls = _count_extractions(monkeypatch)
    warm = audit(MINI, cache=cache)
    assert calls == []
    assert _json(warm) == _json(cold)


def test_only_changed_files_are_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    cache = FactsCache(tmp_path / "cache")
    audit(tree, cache=cache)
    machine = tree / "target/i386/machine.c"
    machine.write_text(machine.read_text().replace("        &vmstate_xcr0,\n", ""))
    calls = _count_extractions(monkeypatch)
    result = audit(tree, cache=cache)
    assert calls == ["target/i386/machine.c"]
    assert "cpu/xcr0" not in {f.subsection for f in result.findings if f.rule == "VG001"}


def test_damaged_entries_are_recomputed(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path / "cache")
    expected = _json(audit(MINI, cache=cache))
    entries = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert entries
    for entry in entries:
        entry.write_bytes(b"not a pickle")
    assert _json(audit(MINI, cache=cache)) == expected


def test_no_cache_writes_nothing(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    env = {"VMSTATE_GUARD_CACHE": str(cache_dir)}
    run_cli("audit", str(MINI), "--no-cache", env=env)
    assert not cache_dir.exists()
    run_cli("audit", str(MINI), env=env)
    assert [p for p in cache_dir.rglob("*") if p.is_file()]


def test_parallel_inventory_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzer.facts.batch

    loader = MINI.parent / "qemu-loader"
    sequential = _json(audit(loader, jobs=1))
    monkeypatch.setattr(analyzer.facts.batch, "PARALLEL_THRESHOLD", 1)
    assert _json(audit(loader, jobs=2)) == sequential


def test_jobs_must_be_positive() -> None:
    result = run_cli("audit", str(MINI), "--jobs", "0")
    assert result.returncode == 2
    assert "expected a whole number of at least 1, not '0'" in result.stderr


def test_unchanged_tree_reuses_the_whole_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FactsCache(tmp_path / "cache")
    cold = audit(MINI, cache=cache)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the analysis ran again")

    monkeypatch.setattr(analyzer.audit, "Capabilities", fail)
    assert _json(audit(MINI, cache=cache)) == _json(cold)
    # A setting that changes the analysis is part of the key.
    from analyzer.config import Config

    with pytest.raises(AssertionError, match="ran again"):
        audit(MINI, cache=cache, config=Config(capabilities={"extension_calls": ("fork_has_cap",)}))


def test_code_digest_covers_subpackages(tmp_path: Path) -> None:
    # A change in analyzer/facts/ once left whole analyses cached by an older
    # extractor: the digest skipped subdirectories.
    package = tmp_path / "analyzer"
    (package / "facts").mkdir(parents=True)
    (package / "audit.py").write_text("")
    (package / "facts" / "extract.py").write_text("old = 1\n")

    def digest() -> bytes:
        state = hashlib.sha256()
        _digest_tree(package, "analyzer", state)
        return state.digest()

    before = digest()
    (package / "facts" / "extract.py").write_text("new = 1\n")
    assert digest() != before


def test_unchanged_tree_is_not_read_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The files' stat data match the cached run's: no file is opened.
    from analyzer.tree import DirectoryReader

    cache = FactsCache(tmp_path / "cache")
    cold = audit(MINI, cache=cache)

    def fail(self: DirectoryReader, path: str) -> bytes | None:
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(DirectoryReader, "read", fail)
    assert _json(audit(MINI, cache=cache)) == _json(cold)


def test_touched_but_unchanged_files_reuse_the_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from analyzer.tree import DirectoryReader

    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    cache = FactsCache(tmp_path / "cache")
    cold = _json(audit(tree, cache=cache))
    machine = tree / "target/i386/machine.c"
    os.utime(machine, ns=(machine.stat().st_atime_ns, machine.stat().st_mtime_ns + 10**9))

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the analysis ran again")

    with monkeypatch.context() as patched:
        patched.setattr(analyzer.audit, "Capabilities", fail)
        assert _json(audit(tree, cache=cache)) == cold  # read and hashed: same bytes
    with monkeypatch.context() as patched:
        patched.setattr(DirectoryReader, "read", fail)
        assert _json(audit(tree, cache=cache)) == cold  # and now known by its new stat data


def test_a_file_shared_by_units_is_extracted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.facts.batch import extract_many
    from analyzer.profile import load_profile

    calls = _count_extractions(monkeypatch)
    accel = b"int kvm_check_extension(KVMState *s, unsigned int extension) { return 0; }\n"
    profiles = [load_profile("i386"), load_profile("arm")]
    jobs = [("accel/kvm/kvm-all.c", accel, "accel", 0), ("accel/kvm/kvm-all.c", accel, "accel", 1)]
    first, second = extract_many(jobs, profiles)
    assert calls == ["accel/kvm/kvm-all.c"]
    assert first is second
    # A file that names one target's CPU state gives that target facts of its own.
    cpu = b"void f(X86CPU *cpu) { cpu->env.a20_mask = 1; }\n"
    extract_many([("x.c", cpu, "kvm", 0), ("x.c", cpu, "kvm", 1)], profiles)
    assert calls[1:] == ["x.c", "x.c"]


def test_collector_is_paused_only_while_analysing(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    seen: list[bool] = []
    original = analyzer.audit.Capabilities

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(gc.isenabled())
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(analyzer.audit, "Capabilities", spy)
    audit(MINI)
    assert seen == [False]
    assert gc.isenabled()


def test_batch_gives_the_facts_asked_for_in_that_order() -> None:
    from analyzer.facts.batch import Batch
    from analyzer.profile import load_profile

    profiles = [load_profile("i386")]
    jobs = [(f"f{i}.c", f"int f{i}(void) {{ return {i}; }}\n".encode(), "kvm", 0) for i in range(9)]
    with Batch(jobs, profiles, None, workers=2, in_order=len(jobs)) as batch:
        assert [f.path for f in batch.facts(wanted=[7, 2])] == ["f7.c", "f2.c"]
        assert [f.path for f in batch.facts()] == [f"f{i}.c" for i in range(9)]


def test_a_batch_loads_cached_facts_only_when_asked_for_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzer.facts.batch
    from analyzer.facts.batch import Batch
    from analyzer.profile import load_profile

    profiles = [load_profile("i386")]
    jobs = [(f"f{i}.c", f"int f{i}(void) {{ return {i}; }}\n".encode(), "kvm", 0) for i in range(4)]
    cache = FactsCache(tmp_path / "cache")
    with Batch(jobs, profiles, cache) as batch:
        expected = batch.facts()
    loaded: list[str] = []
    real_load = FactsCache.load

    def spy(self: FactsCache, extraction: str, path: str, role: str, data: bytes) -> object:
        loaded.append(path)
        return real_load(self, extraction, path, role, data)

    def no_extraction(*args: object) -> None:
        raise AssertionError("cached facts were extracted again")

    monkeypatch.setattr(FactsCache, "load", spy)
    monkeypatch.setattr(analyzer.facts.batch, "extract_file", no_extraction)
    with Batch(jobs, profiles, cache) as batch:
        assert loaded == []  # a unit found whole in the cache never asks
        assert batch.facts(wanted=[2]) == [expected[2]]
        assert loaded == ["f2.c"]


def _slow_jobs(count: int) -> list[tuple[str, bytes, str, int]]:
    return [(f"f{i}.c", f"int f{i}(void) {{ return {i}; }}\n".encode(), "kvm", 0) for i in range(count)]


def _in_workers_only(monkeypatch: pytest.MonkeyPatch, act: Callable[[str], None]) -> None:
    """Make each extraction slow (so that the workers take some jobs), and `act` in the workers only."""
    import os
    import time

    import analyzer.facts.batch

    main = os.getpid()
    original = analyzer.facts.batch.extract_file

    def extract(path: str, *args: object, **kwargs: object) -> object:
        time.sleep(0.01)
        if os.getpid() != main:
            act(path)
        return original(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(analyzer.facts.batch, "extract_file", extract)


def test_workers_take_jobs_and_send_facts_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from analyzer.facts.batch import Batch
    from analyzer.profile import load_profile

    log = tmp_path / "extracted-in-workers"
    _in_workers_only(monkeypatch, lambda path: log.open("a").write(path + "\n"))
    jobs = _slow_jobs(60)
    with Batch(jobs, [load_profile("i386")], None, workers=2, in_order=len(jobs)) as batch:
        facts = batch.facts()
    assert [f.path for f in facts] == [f"f{i}.c" for i in range(60)]
    in_workers = log.read_text().split()
    assert in_workers, "the workers took no job"
    assert len(set(in_workers)) == len(in_workers) < 60  # each job once; this process took some too


def test_one_file_to_extract_starts_no_worker() -> None:
    # A one-line change re-extracts one file: this process does it rather than wait for a fork.
    from analyzer.facts.batch import Batch
    from analyzer.profile import load_profile

    jobs = _slow_jobs(1)
    with Batch(jobs, [load_profile("i386")], None, workers=2, in_order=1) as batch:
        assert batch._processes == []
        assert [f.path for f in batch.facts()] == ["f0.c"]


def test_a_failing_worker_names_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.facts.batch import Batch, WorkerError
    from analyzer.profile import load_profile

    def fail(path: str) -> None:
        raise ValueError(f"cannot read {path}")

    _in_workers_only(monkeypatch, fail)
    jobs = _slow_jobs(60)
    with (
        pytest.raises(WorkerError, match=r"^(f\d+\.c): ValueError: cannot read \1$") as raised,
        Batch(jobs, [load_profile("i386")], None, workers=2) as batch,
    ):
        batch.facts()
    assert 'in fail\n    raise ValueError(f"cannot read {path}")' in str(raised.value.__cause__)


def test_a_worker_that_dies_is_an_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from analyzer.facts.batch import Batch, WorkerError
    from analyzer.profile import load_profile

    _in_workers_only(monkeypatch, lambda path: os._exit(3))
    jobs = _slow_jobs(60)
    with (
        pytest.raises(WorkerError, match="a worker process died"),
        Batch(jobs, [load_profile("i386")], None, workers=2) as batch,
    ):
        batch.facts()


def test_a_cached_analysis_found_while_workers_run_ends_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The units' files go to the workers before the inventory is read; a
    # content-key hit then returns at once, the workers' pending work dropped.
    monkeypatch.setattr(analyzer.facts.batch, "PARALLEL_THRESHOLD", 1)
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    cache = FactsCache(tmp_path / "cache")
    cold = _json(audit(tree, cache=cache, jobs=2))
    # The same files elsewhere (a tree with no snapshot in this cache), their
    # facts gone from it: the units' files go to workers.
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    shutil.rmtree(tmp_path / "cache" / "facts")
    started: list[int] = []
    real_start = multiprocessing.process.BaseProcess.start

    def start(process: multiprocessing.process.BaseProcess) -> None:
        started.append(1)
        real_start(process)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)
    assert json.loads(_json(audit(copy, cache=cache, jobs=2))) == json.loads(cold.replace(str(tree), str(copy)))
    assert started  # and the content-key hit ended the run while they ran


def test_the_units_of_a_target_share_the_facts_of_a_file() -> None:
    from analyzer.profile import load_profile, load_units

    # target/ppc/kvm.c's shape: the CPU's state and accessors, and a device's state type.
    kvm_c = (
        b"void f(PowerPCCPU *cpu) { CPUPPCState *env = &cpu->env; *cpu_fpr_ptr(env, 0) = 1; }\n"
        b"void g(SpaprCpuState *spapr_cpu) { spapr_cpu->vpa_addr = 0; }\n"
    )
    units = load_units("ppc")
    assert len({unit.extraction_key(kvm_c) for unit in units}) == 1  # CPU, spapr_cpu, spapr, ...
    # Whose state a member is, is decided per unit when the facts are read.
    assert units[0].is_state_key("field:PowerPCCPU.env.spr")
    spapr_cpu = next(unit for unit in units if unit.unit == "spapr_cpu")
    assert spapr_cpu.is_state_key("field:SpaprCpuState.vpa_addr")
    assert not spapr_cpu.is_state_key("field:PowerPCCPU.env.spr")
    # Another target reads the file with its own state types.
    assert load_profile("i386").extraction_key(kvm_c) != units[0].extraction_key(kvm_c)


def test_what_is_built_while_paused_goes_to_the_oldest_generation() -> None:
    import gc

    from analyzer.collector import collector_paused

    with collector_paused():
        built = [[i] for i in range(10_000)]
    # The next young collection will not walk them; a full one still frees their cycles.
    assert not any(o is built for o in gc.get_objects(generation=0))
    assert any(o is built for o in gc.get_objects(generation=2))
    assert gc.isenabled()


def test_ctrl_c_is_left_to_the_main_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal
    import time

    from analyzer.facts.batch import Batch
    from analyzer.profile import load_profile

    _in_workers_only(monkeypatch, lambda path: None)
    jobs = _slow_jobs(100)
    with Batch(jobs, [load_profile("i386")], None, workers=2) as batch:
        time.sleep(0.1)  # the workers are taking jobs
        for process in batch._processes:
            assert process.pid is not None
            os.kill(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the process group
        assert len(batch.facts()) == 100  # no worker died of it


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def test_garbage_in_a_pointer_is_ignored(tmp_path: Path) -> None:
    env = {"VMSTATE_GUARD_CACHE": str(tmp_path / "cache")}
    expected = run_cli("audit", str(MINI), "--format", "json", "--no-cache")
    run_cli("audit", str(MINI), env=env)
    pointers = _files(tmp_path / "cache" / "stamps")
    assert pointers
    for pointer in pointers:
        pointer.write_bytes(b"\xff\xfe garbage\0/../../etc/passwd\n")
    result = run_cli("audit", str(MINI), "--format", "json", env=env)
    assert (result.returncode, result.stdout) == (expected.returncode, expected.stdout)


def test_a_pointer_cannot_name_a_path_outside_the_cache(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path / "cache")
    stamp = "a" * 64
    cache.store_entry("stamps", stamp, "../../../outside")
    assert cache.load_pointer(stamp) is None
    cache.store_pointer(stamp, "b" * 64)
    assert cache.load_pointer(stamp) == "b" * 64


def test_another_trees_analysis_swapped_in_is_not_served(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    machine = tree / "target/i386/machine.c"
    machine.write_text(machine.read_text().replace("        &vmstate_xcr0,\n", ""))
    cache = FactsCache(tmp_path / "cache")
    audit(MINI, cache=cache)
    (mini_entry,) = _files(tmp_path / "cache" / "analyses")
    audit(tree, cache=cache)
    (tree_entry,) = [p for p in _files(tmp_path / "cache" / "analyses") if p != mini_entry]
    tree_entry.write_bytes(mini_entry.read_bytes())  # MINI's analysis under the other tree's key
    assert _json(audit(tree, cache=cache)) == _json(audit(tree))


class _Planted:
    """A pickle that runs code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def _plant(cache_dir: Path, marker: Path) -> None:
    """Replace every entry with a pickle that runs code, under its own valid header."""
    import pickle

    for entry in _files(cache_dir):
        header = entry.read_bytes().split(b"\n", 1)[0] + b"\n"
        entry.write_bytes(header + pickle.dumps(_Planted(marker)))


def test_a_cache_others_may_write_to_is_not_used(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    env = {"VMSTATE_GUARD_CACHE": str(cache_dir)}
    run_cli("audit", str(MINI), env=env)
    marker = tmp_path / "code-ran"
    _plant(cache_dir, marker)
    cache_dir.chmod(0o777)  # a shared cache
    expected = run_cli("audit", str(MINI), "--format", "json", "--no-cache")
    result = run_cli("audit", str(MINI), "--format", "json", env=env)
    assert not marker.exists()
    assert (result.returncode, result.stdout) == (expected.returncode, expected.stdout)
    assert f"vmstate-guard: warning: cache directory {cache_dir} is not private to this user" in result.stderr
    # A new cache directory is private from the start.
    FactsCache(tmp_path / "new")
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_an_entry_others_may_write_is_not_loaded(tmp_path: Path) -> None:
    cache = FactsCache(tmp_path / "cache")
    expected = _json(audit(MINI, cache=cache))
    marker = tmp_path / "code-ran"
    _plant(tmp_path / "cache", marker)
    for entry in _files(tmp_path / "cache"):
        entry.chmod(0o666)
    assert _json(audit(MINI, cache=cache)) == expected
    assert not marker.exists()


def test_a_full_cache_leaves_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import io
    import os

    import analyzer.cache

    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd: int, *args: object, **kwargs: object) -> Full:
        os.close(fd)
        return Full()

    monkeypatch.setattr(analyzer.cache.os, "fdopen", fdopen)
    audit(MINI, cache=FactsCache(tmp_path / "cache"))
    assert _files(tmp_path / "cache") == []


def test_an_empty_home_does_not_put_the_cache_at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    from analyzer.cache import cache_directory

    for variable in ("VMSTATE_GUARD_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", "")
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert cache_directory() == home / ".cache/vmstate-guard/facts"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # invalid: ignored
    assert cache_directory() == home / ".cache/vmstate-guard/facts"


def _count_profile_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The TOML texts parsed from now on, with no profile loaded in this process yet."""
    import tomllib

    import analyzer.profile

    parsed: list[str] = []
    real_loads = tomllib.loads

    def counting(text: str) -> dict[str, object]:
        parsed.append(text)
        return real_loads(text)

    monkeypatch.setattr(tomllib, "loads", counting)
    # As in a new process; monkeypatch puts back the profiles other tests loaded.
    monkeypatch.setattr(analyzer.profile, "_loaded", {})
    return parsed


def test_each_target_profile_is_parsed_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.profile import available_targets

    parsed = _count_profile_parses(monkeypatch)
    audit(MINI)  # present_targets opens every profile, then _open_units the tree's
    audit(MINI)
    assert len(parsed) == len(available_targets())


def test_a_profile_is_parsed_once_for_its_bytes_with_a_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzer.profile
    from analyzer.profile import load_units

    cache = FactsCache(tmp_path / "cache")
    parsed = _count_profile_parses(monkeypatch)
    first = load_units("i386", cache)
    assert len(parsed) == 1
    monkeypatch.setattr(analyzer.profile, "_loaded", {})  # the next process
    assert load_units("i386", cache) == first
    assert len(parsed) == 1  # loaded, not parsed
    # Other bytes are parsed again: a profile edited in a checkout.
    real_read = analyzer.profile._read
    monkeypatch.setattr(analyzer.profile, "_read", lambda target: real_read(target) + b"\n# edited\n")
    monkeypatch.setattr(analyzer.profile, "_loaded", {})
    assert load_units("i386", cache) == first
    assert len(parsed) == 2
    # A damaged entry is parsed again, not trusted.
    for entry in (tmp_path / "cache" / "profiles").rglob("*"):
        if entry.is_file():
            entry.write_bytes(entry.read_bytes()[:-20])
    monkeypatch.setattr(analyzer.profile, "_loaded", {})
    assert load_units("i386", cache) == first
    assert len(parsed) == 3


_REDUCED: list[int] = []


class _Counted:
    """A value that counts how often it is pickled."""

    def __reduce__(self) -> tuple[type, tuple[()]]:
        _REDUCED.append(1)
        return (_Counted, ())


def test_a_deferred_value_is_pickled_once_and_its_bytes_kept_once_read() -> None:
    # An inventory part inside each new tree-wide part, a unit's detail stored
    # again: their bytes are copied, not made again from the value.
    import pickle

    from analyzer.cache import Deferred

    _REDUCED.clear()
    given = Deferred(_Counted())
    first = pickle.dumps(given)
    assert pickle.dumps(given) == first and len(_REDUCED) == 1
    loaded = pickle.loads(first)
    assert not loaded.loaded
    assert isinstance(loaded.get(), _Counted) and loaded.loaded
    assert pickle.dumps(loaded) == first and len(_REDUCED) == 1
