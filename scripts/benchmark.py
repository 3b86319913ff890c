#!/usr/bin/env python3
"""Time vmstate-guard on a QEMU tree against the floor of each command.

    python scripts/benchmark.py QEMU_DIR [--repeat N] [--runs N]

The tree is copied to a scratch git repository (QEMU_DIR is only read), and
every floor is measured here, in this run, on this machine: read the ratios,
not the seconds. Each floor is what the command cannot avoid: starting
Python and importing tree-sitter, then a bare parse of exactly the files, or
spans of files, it parses (the inventory's description definitions, a CPU's
properties), no more. The pre-merge rows are whole processes, min/median/max
over --runs runs, each run followed by a run of its floor (the ratio's two
sides in turns, so that what the machine does meanwhile weighs on both); a
`check` row makes a new one-line edit in
target/i386/machine.c (a new commit, for the two-revision row) before each
run, so each is the first run after a change, with the cache warm from the
runs before. Peak memory is the largest resident size of the cold audit's
process and of its largest worker.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from analyzer.audit import audit, present_targets
from analyzer.errors import InputError
from analyzer.facts.extract import _SPANS_OF
from analyzer.inventory import description_files
from analyzer.preprocess import mask
from analyzer.profile import Profile, load_units
from analyzer.tree import DirectoryReader, SourceFile, open_tree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parse_floor import ParseJob, parse_all


def _parse_chunk(jobs: list[ParseJob]) -> None:
    parse_all(jobs)


def _best_of(repeat: int, job: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        job()
        best = min(best, time.perf_counter() - start)
    return best


def _files(reader: DirectoryReader, unit: Profile) -> tuple[SourceFile, ...]:
    try:
        return open_tree(reader, unit).files
    except InputError:
        return ()  # a device this release does not have


def _parse_jobs(reader: DirectoryReader, targets: Sequence[str]) -> tuple[list[ParseJob], list[str]]:
    """What an audit without cache of `targets` parses (as the extractor masks it,
    spans where it parses spans), and those files' paths."""
    units = [f for target in targets for unit in load_units(target) for f in _files(reader, unit)]
    seen: set[tuple[str, str]] = set()
    jobs: list[ParseJob] = []
    paths: list[str] = []
    for f in units:
        if (f.path, f.role) not in seen:  # a file read alike by several units is parsed once
            seen.add((f.path, f.role))
            masked = mask(f.data, _SPANS_OF.get(f.role))
            jobs.append((masked.text, masked.spans))
            paths.append(f.path)
    vmstate = {f.path for f in units if f.role == "vmstate"}
    for path, data, _, role in description_files(reader, vmstate):
        if data and role == "inventory":  # `references` files are scanned for names, not parsed
            masked = mask(data, _SPANS_OF["inventory"])
            jobs.append((masked.text, masked.spans))
            paths.append(path)
    return jobs, paths


class Runner:
    """Whole-process runs of vmstate-guard and of floor processes, with a private cache."""

    def __init__(self, repo: Path, cache: Path, runs: int) -> None:
        self.repo, self.runs = repo, runs
        # Bytecode cached as an installed tool has it (pip compiles it), outside
        # the repository, even where the environment turns writing it off.
        environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        pycache = str(cache.parent / "pycache")
        self.env = {**environment, "VMSTATE_GUARD_CACHE": str(cache), "PYTHONPYCACHEPREFIX": pycache}
        self.edits = 0

    def _once(self, argv: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(argv, env=self.env, cwd=self.repo, stdout=subprocess.DEVNULL, check=False)
        return time.perf_counter() - start

    def _floor_argv(self, jobs: list[ParseJob]) -> list[str]:
        """A whole run of parse_floor.py on `jobs`."""
        saved = self.repo.parent / f"floor-{len(jobs)}.pickle"
        saved.write_bytes(pickle.dumps(jobs))
        return [sys.executable, str(Path(__file__).resolve().parent / "parse_floor.py"), str(saved)]

    def floor(self, jobs: list[ParseJob]) -> list[float]:
        """Whole runs of the floor alone."""
        argv = self._floor_argv(jobs)
        return [self._once(argv) for _ in range(self.runs)]

    def row(
        self, args: Sequence[str], jobs: list[ParseJob], before: Callable[[], None] | None = None
    ) -> tuple[list[float], list[float]]:
        """Whole runs of vmstate-guard and of its floor (parse_floor.py on `jobs`),
        in turns: the machine's state (a writeback, another tenant, its clock)
        weighs on the pairs alike, rather than on one column. `before` makes each
        tool run's change; the first runs of each are warm-ups, not counted."""
        argv = [sys.executable, "-m", "analyzer", *args, "--format", "json", "--quiet"]
        floor_argv = self._floor_argv(jobs)
        self._once(argv)
        self._once(floor_argv)
        tool, floor = [], []
        for _ in range(self.runs):
            if before is not None:
                before()
            tool.append(self._once(argv))
            floor.append(self._once(floor_argv))
        return tool, floor

    def edit(self, commit: bool = False) -> None:
        """A new one-line change in machine.c, committed when asked."""
        self.edits += 1
        machine = self.repo / "target/i386/machine.c"
        lines = machine.read_text().split("\n")
        lines[0] = f"/* edit {self.edits} */"  # the licence comment's first line
        machine.write_text("\n".join(lines))
        if commit:
            subprocess.run(["git", "commit", "-qam", f"edit {self.edits}"], cwd=self.repo, check=True)


def _row(name: str, times: list[float], floor: list[float], target: str) -> str:
    low, mid, high = min(times), statistics.median(times), max(times)
    ratio = mid / statistics.median(floor)
    base = statistics.median(floor)
    return f"| {name} | {low:.3f} / {mid:.3f} / {high:.3f} s | {base:.3f} s | {ratio:.1f}x | {target} |"


def _repository(source: Path, scratch: Path) -> Path:
    repo = scratch / "qemu"
    shutil.copytree(source, repo, symlinks=True)
    identity = ["-c", "user.name=benchmark", "-c", "user.email=benchmark@localhost"]
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-qm", "release"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    subprocess.run(["git", "config", "user.name", "benchmark"], cwd=repo, check=True)
    subprocess.run(["git", "config", "user.email", "benchmark@localhost"], cwd=repo, check=True)
    # The copy and its ~40,000 new objects are still being written back to disk:
    # flushed now, so that the writeback does not land on the first rows' runs.
    os.sync()
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", type=Path)
    parser.add_argument("--repeat", type=int, default=3, help="in-process repetitions of the cold audit (best of)")
    parser.add_argument("--runs", type=int, default=7, help="whole-process runs per pre-merge row")
    args = parser.parse_args()

    reader = DirectoryReader(args.tree)
    targets = present_targets(reader)
    jobs, _ = _parse_jobs(reader, targets)
    i386_jobs, i386_paths = _parse_jobs(reader, ["i386"])
    i386_unit_files = {(f.path, f.role): f for unit in load_units("i386") for f in _files(reader, unit)}
    i386_units = [(m.text, m.spans) for f in i386_unit_files.values() for m in [mask(f.data, _SPANS_OF.get(f.role))]]
    machine_data = (args.tree / "target/i386/machine.c").read_bytes()
    machine_twice = [(mask(machine_data).text, None)] * 2  # at both revisions
    workers = os.cpu_count() or 1

    def bare_parse() -> None:
        parse_all(jobs)

    def bare_parallel_parse() -> None:
        chunks = [jobs[i : i + 8] for i in range(0, len(jobs), 8)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_parse_chunk, chunks))

    baseline = _best_of(args.repeat, bare_parse)
    parallel_baseline = _best_of(args.repeat, bare_parallel_parse)
    cold = _best_of(args.repeat, lambda: audit(args.tree))
    cold_parallel = _best_of(args.repeat, lambda: audit(args.tree, jobs=workers))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size = sum(len(text) for text, _ in jobs)
    print(f"tree: {args.tree} ({len(jobs)} files parsed, {size / 1e6:.1f} MB), {workers} cores")
    print(f"bare parse of what the audit parses: {baseline:.3f} s; on {workers} processes: {parallel_baseline:.3f} s")
    print(f"cold audit: {cold:.3f} s ({cold / baseline:.2f}x); on {workers} processes: {cold_parallel:.3f} s")
    # The target is the "no slower than today": the ratio to compare with
    # is an older checkout's, measured by this script on the same machine.
    print(f"ratio parallel cold audit / parallel bare parse: {cold_parallel / parallel_baseline:.2f}")
    print(f"peak memory: {peak_mb:.0f} MB (largest worker process: {worker_mb:.0f} MB; target: 400 MB)")

    with tempfile.TemporaryDirectory() as scratch:
        repo = _repository(args.tree, Path(scratch))
        run = Runner(repo, Path(scratch) / "cache", args.runs)
        start_floor = run.floor([])
        print("\n| command | min / median / max | floor | median / floor | target |")
        print("|---|---|---|---|---|")
        print(_row("Python start, tree-sitter import", start_floor, start_floor, ""))
        check_head, floor = run.row(["check", ".", "--base", "HEAD"], machine_twice, before=run.edit)
        print(_row("`check . --base HEAD`, one line changed, all targets", check_head, floor, "5x"))
        check_i386, floor = run.row(["check", ".", "--base", "HEAD", "--target", "i386"], machine_twice, run.edit)
        print(_row("`check . --base HEAD --target i386`", check_i386, floor, "5x"))
        subprocess.run(["git", "commit", "-qam", "edit"], cwd=repo, check=True)
        between, floor = run.row(
            ["check", ".", "--base", "HEAD~1", "--head", "HEAD"], machine_twice, lambda: run.edit(commit=True)
        )
        ratio = statistics.median(between) / statistics.median(check_head)
        print(
            _row("`check . --base HEAD~1 --head HEAD`, one line, all targets", between, floor, "")
            + f" {ratio:.2f}x the working-tree check (target: 1.5x)"
        )
        same, floor = run.row(["check", ".", "--base", "HEAD~0", "--head", "HEAD"], [])
        print(_row("`check . --base HEAD~0 --head HEAD`", same, floor, "nothing to do"))
        warm, floor = run.row(["audit", ".", "--target", "i386"], i386_units)
        print(_row(f"`audit . --target i386`, warm (floor: its {len(i386_units)} files)", warm, floor, "2x"))
        cold_i386, floor = run.row(["audit", ".", "--target", "i386", "--no-cache"], i386_jobs)
        print(_row(f"`audit . --target i386 --no-cache` (floor: {len(i386_paths)} files)", cold_i386, floor, ""))


if __name__ == "__main__":
    main()
