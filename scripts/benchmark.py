#!/usr/bin/env python3
"""Time `audit` on a QEMU tree against a bare tree-sitter parse of the same files.

    python scripts/benchmark.py QEMU_DIR [--repeat N]

Both are measured in this run on this machine, so the ratio is what to read,
not the seconds. Peak memory is the process's maximum resident size, and
that of the largest worker process.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import tree_sitter_c
from tree_sitter import Language, Parser

from analyzer.audit import audit, present_targets
from analyzer.cache import FactsCache
from analyzer.errors import InputError
from analyzer.inventory import description_files
from analyzer.profile import Profile, load_units
from analyzer.tree import DirectoryReader, SourceFile, open_tree

_WORKER_PARSER: Parser | None = None


def _parse_in_worker(data: bytes) -> int:
    global _WORKER_PARSER
    if _WORKER_PARSER is None:
        _WORKER_PARSER = Parser(Language(tree_sitter_c.language()))
    return _WORKER_PARSER.parse(data).root_node.child_count


def _best_of(repeat: int, job) -> float:  # type: ignore[no-untyped-def]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    # The same files the audit parses: every unit's of every target the tree
    # has, and every file with a description. (Headers and other files it
    # only scans for description names, VG006, are work the audit adds.)
    reader = DirectoryReader(args.tree)
    unit_files = [f for target in present_targets(reader) for unit in load_units(target) for f in _files(reader, unit)]
    sources = [f.data for f in unit_files]
    sources += [
        data
        for _, data, _, role in description_files(reader, {f.path for f in unit_files if f.role == "vmstate"})
        if data and role == "inventory"
    ]
    ts_parser = Parser(Language(tree_sitter_c.language()))

    def bare_parse() -> None:
        for data in sources:
            ts_parser.parse(data)

    jobs = os.cpu_count() or 1

    def bare_parallel_parse() -> None:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(_parse_in_worker, sources, chunksize=8))

    baseline = _best_of(args.repeat, bare_parse)
    parallel_baseline = _best_of(args.repeat, bare_parallel_parse)
    cold = _best_of(args.repeat, lambda: audit(args.tree))
    cold_parallel = _best_of(args.repeat, lambda: audit(args.tree, jobs=jobs))
    with tempfile.TemporaryDirectory() as scratch:
        cache = FactsCache(Path(scratch))
        audit(args.tree, cache=cache)
        warm = _best_of(args.repeat, lambda: audit(args.tree, cache=cache))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The largest of the processes that have ended: the audit's workers, and the
    # bare parse's (forked from this one, so shared pages count in each).
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size = sum(len(data) for data in sources)
    print(f"tree: {args.tree} ({len(sources)} files, {size / 1e6:.1f} MB)")
    print(f"bare tree-sitter parse:         {baseline:.3f} s (best of {args.repeat})")
    print(f"bare parse on {jobs} processes:    {parallel_baseline:.3f} s")
    print(f"audit, no facts cache:          {cold:.3f} s")
    print(f"audit, {jobs} processes, no cache: {cold_parallel:.3f} s")
    print(f"audit, facts cached:            {warm:.3f} s")
    print(f"ratio cold audit / bare parse:  {cold / baseline:.2f}  (target: at most 1.5)")
    print(f"ratio parallel audit / parallel bare parse: {cold_parallel / parallel_baseline:.2f}  (target: at most 1.3)")
    print(f"ratio cached audit / cold:      {warm / cold:.2f}  (target: at most 0.1)")
    print(f"peak memory: {peak_mb:.0f} MB (largest worker process: {worker_mb:.0f} MB)")


if __name__ == "__main__":
    main()
