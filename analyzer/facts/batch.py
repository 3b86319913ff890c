"""Facts of many files at once: from the cache, or parsed on several processes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from ..cache import FactsCache
from ..profile import Profile
from .extract import extract_file
from .model import FileFacts

# Below this many files to parse, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 64

Job = tuple[str, bytes, str]  # path, bytes, role


_worker_profile: Profile | None = None


def _start_worker(profile: Profile) -> None:
    global _worker_profile
    _worker_profile = profile  # sent once per worker, not once per file


def _extract_in_worker(job: Job) -> FileFacts:
    path, data, role = job
    assert _worker_profile is not None
    return extract_file(path, data, _worker_profile, role)


def extract_many(
    jobs: list[Job],
    profile: Profile,
    cache: FactsCache | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    workers: int = 1,
) -> list[FileFacts]:
    """The facts of each job, in the jobs' order whatever the scheduling."""
    results: list[FileFacts | None] = [cache.load(path, role, data) if cache else None for path, data, role in jobs]
    missing = [index for index, found in enumerate(results) if found is None]
    if workers > 1 and len(missing) >= PARALLEL_THRESHOLD:
        # Largest files first (kvm.c, cpu.c), so no worker is left with them at the end.
        order = sorted(missing, key=lambda i: -len(jobs[i][1]))
        with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(profile,)) as pool:
            extracted = list(pool.map(_extract_in_worker, [jobs[i] for i in order], chunksize=4))
        _store(extracted, order, jobs, results, cache, progress)
    else:
        work = [extract_file(jobs[i][0], jobs[i][1], profile, jobs[i][2]) for i in missing]
        _store(work, missing, jobs, results, cache, progress)
    return [facts for facts in results if facts is not None]


def _store(
    extracted: list[FileFacts],
    missing: list[int],
    jobs: list[Job],
    results: list[FileFacts | None],
    cache: FactsCache | None,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    for count, (index, facts) in enumerate(zip(missing, extracted, strict=True)):
        path, data, role = jobs[index]
        if progress is not None:
            progress(path, count, len(missing))
        results[index] = facts
        if cache:
            cache.store(path, role, data, facts)
