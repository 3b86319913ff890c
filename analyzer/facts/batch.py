"""Facts of many files at once: from the cache, or parsed on several processes."""

from __future__ import annotations

import gc
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from ..cache import FactsCache
from ..profile import Profile
from .extract import extract_file
from .model import FileFacts

# Below this many files to parse, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 64

# path, bytes, role, and the index of the unit profile it is read for; None for
# the inventory, whose facts (descriptions) no profile changes.
Job = tuple[str, bytes, str, int | None]


_worker_profiles: list[Profile] = []


def _start_worker(profiles: list[Profile]) -> None:
    global _worker_profiles
    _worker_profiles = profiles  # sent once per worker, not once per file
    gc.disable()  # a short-lived process building acyclic facts: see analyzer/collector.py


def _extract(job: Job, profiles: list[Profile]) -> FileFacts:
    path, data, role, unit = job
    return extract_file(path, data, profiles[unit or 0], role)


def _extract_in_worker(job: Job) -> FileFacts:
    return _extract(job, _worker_profiles)


def _extraction_key(job: Job, profiles: list[Profile]) -> str:
    """Jobs with equal keys have equal facts: the inventory's depend on no
    profile, the others on what Profile.extraction_key says."""
    _, data, role, unit = job
    return "" if unit is None else f"{role}:{profiles[unit].extraction_key(data)}"


def extract_many(
    jobs: list[Job],
    profiles: list[Profile],
    cache: FactsCache | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    workers: int = 1,
) -> list[FileFacts]:
    """The facts of each job, in the jobs' order whatever the scheduling; a
    file read alike for several units is extracted (and cached) once."""
    keys = [_extraction_key(job, profiles) for job in jobs]
    # Index of the first job each job repeats: same file, role, bytes and key.
    first: dict[tuple[str, str, str, bytes], int] = {}
    same_as = [
        first.setdefault((path, role, key, data), i)
        for i, ((path, data, role, _), key) in enumerate(zip(jobs, keys, strict=True))
    ]
    unique = sorted(first.values())
    results: dict[int, FileFacts | None] = {
        i: cache.load(keys[i], jobs[i][0], jobs[i][2], jobs[i][1]) if cache else None for i in unique
    }
    missing = [i for i in unique if results[i] is None]
    if workers > 1 and len(missing) >= PARALLEL_THRESHOLD:
        # Largest files first (kvm.c, cpu.c), so no worker is left with them at the end.
        order = sorted(missing, key=lambda i: -len(jobs[i][1]))
        with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(profiles,)) as pool:
            extracted = list(pool.map(_extract_in_worker, [jobs[i] for i in order], chunksize=4))
        _store(extracted, order, jobs, keys, results, cache, progress)
    else:
        work = [_extract(jobs[i], profiles) for i in missing]
        _store(work, missing, jobs, keys, results, cache, progress)
    return [facts for i in same_as if (facts := results[i]) is not None]


def _store(
    extracted: list[FileFacts],
    missing: list[int],
    jobs: list[Job],
    keys: list[str],
    results: dict[int, FileFacts | None],
    cache: FactsCache | None,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    for count, (index, facts) in enumerate(zip(missing, extracted, strict=True)):
        path, data, role, _ = jobs[index]
        if progress is not None:
            progress(path, count, len(missing))
        results[index] = facts
        if cache:
            cache.store(keys[index], path, role, data, facts)
