"""Facts of many files at once: from the cache, or parsed on several processes."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager

from ..cache import FactsCache
from ..profile import Profile
from .extract import extract_file
from .model import FileFacts

# Below this many files to parse, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 64
# Files sent to a worker at a time: fewer round trips, still a fair share each.
_CHUNK = 4

# path, bytes, role, and the index of the unit profile it is read for; None for
# the inventory, whose facts (descriptions) no profile changes.
Job = tuple[str, bytes, str, int | None]
Progress = Callable[[str, int, int], None]


_worker_profiles: list[Profile] = []


def _start_worker(profiles: list[Profile]) -> None:
    global _worker_profiles
    _worker_profiles = profiles  # sent once per worker, not once per file
    gc.disable()  # a short-lived process building acyclic facts: see analyzer/collector.py


def _extract(job: Job, profiles: list[Profile]) -> FileFacts:
    path, data, role, unit = job
    return extract_file(path, data, profiles[unit or 0], role)


def _extract_chunk_in_worker(jobs: list[Job]) -> list[FileFacts]:
    return [_extract(job, _worker_profiles) for job in jobs]


def _extraction_key(job: Job, profiles: list[Profile]) -> str:
    """Jobs with equal keys have equal facts: the inventory's depend on no
    profile, the others on what Profile.extraction_key says."""
    _, data, role, unit = job
    return "" if unit is None else f"{role}:{profiles[unit].extraction_key(data)}"


@contextmanager
def worker_pool(workers: int, profiles: list[Profile], files: int) -> Iterator[Executor | None]:
    """Processes to extract on, or None when one process does better (few files)."""
    if workers <= 1 or files < PARALLEL_THRESHOLD:
        yield None
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(profiles,))
    try:
        yield pool
    finally:
        # Work a cached analysis made unnecessary is dropped, not waited for.
        pool.shutdown(wait=True, cancel_futures=True)


class Batch:
    """The facts of a list of jobs: cached ones at once, the rest extracted on
    `pool` as soon as the batch is made (so that the caller can do other work,
    or start another batch, meanwhile) or when asked for, without a pool.
    A file read alike for several units is extracted (and cached) once."""

    def __init__(
        self,
        jobs: list[Job],
        profiles: list[Profile],
        cache: FactsCache | None,
        pool: Executor | None = None,
        largest_first: bool = True,
    ) -> None:
        self.jobs, self.profiles, self.cache = jobs, profiles, cache
        self.keys = [_extraction_key(job, profiles) for job in jobs]
        # Index of the first job each job repeats: same file, role, bytes and key.
        first: dict[tuple[str, str, str, bytes], int] = {}
        self.same_as = [
            first.setdefault((path, role, key, data), i)
            for i, ((path, data, role, _), key) in enumerate(zip(jobs, self.keys, strict=True))
        ]
        unique = sorted(first.values())
        self.results: dict[int, FileFacts | None] = {
            i: cache.load(self.keys[i], jobs[i][0], jobs[i][2], jobs[i][1]) if cache else None for i in unique
        }
        self.missing = [i for i in unique if self.results[i] is None]
        self.done = 0
        # Extracting chunks of the missing jobs, and which chunk each job is in.
        self.chunks: list[tuple[list[int], Future[list[FileFacts]]]] = []
        self.chunk_of: dict[int, int] = {}
        if pool is not None:
            # Largest files first (kvm.c, cpu.c), so that no worker is left with them
            # at the end; or in order, for a caller that uses them as they come.
            order = sorted(self.missing, key=lambda i: -len(jobs[i][1])) if largest_first else self.missing
            for start in range(0, len(order), _CHUNK):
                chunk = order[start : start + _CHUNK]
                self.chunk_of.update((i, len(self.chunks)) for i in chunk)
                self.chunks.append((chunk, pool.submit(_extract_chunk_in_worker, [jobs[i] for i in chunk])))

    def facts(self, progress: Progress | None = None, wanted: Iterable[int] | None = None) -> list[FileFacts]:
        """The facts of the `wanted` jobs (default: all), in that order."""
        if wanted is None:
            # Rather than wait, take the chunks no worker has started, from the
            # back of the queue (the workers take from the front).
            for position in reversed(range(len(self.chunks))):
                chunk, future = self.chunks[position]
                if future.cancel():
                    for index in chunk:
                        self._store(index, _extract(self.jobs[index], self.profiles), progress)
        found: list[FileFacts] = []
        for i in range(len(self.jobs)) if wanted is None else wanted:
            index = self.same_as[i]
            facts = self.results[index]
            if facts is None:
                self._extract(index, progress)
                facts = self.results[index]
            if facts is not None:
                found.append(facts)
        return found

    def _extract(self, index: int, progress: Progress | None) -> None:
        if index in self.chunk_of:
            chunk, future = self.chunks[self.chunk_of[index]]
            if not future.cancel():  # started: wait for it; else extract it here
                for i, extracted in zip(chunk, future.result(), strict=True):
                    self._store(i, extracted, progress)
                return
            for i in chunk:
                self._store(i, _extract(self.jobs[i], self.profiles), progress)
        else:
            self._store(index, _extract(self.jobs[index], self.profiles), progress)

    def _store(self, index: int, facts: FileFacts, progress: Progress | None) -> None:
        path, data, role, _ = self.jobs[index]
        if progress is not None:
            progress(path, self.done, len(self.missing))
        self.done += 1
        self.results[index] = facts
        if self.cache:
            self.cache.store(self.keys[index], path, role, data, facts)


def extract_many(
    jobs: list[Job],
    profiles: list[Profile],
    cache: FactsCache | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> list[FileFacts]:
    """The facts of each job, in the jobs' order, on `workers` processes."""
    with worker_pool(workers, profiles, len(jobs)) as pool:
        return Batch(jobs, profiles, cache, pool).facts(progress)
