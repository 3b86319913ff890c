"""Facts of many files at once: from the cache, or extracted on several processes.

Worker processes are forked once a batch's jobs are known, and inherit them:
a file's bytes never travel to a worker, only facts travel back. Each worker
takes the next job itself from a shared counter, so that none waits on the
main process, which meanwhile analyses the units whose facts have come back;
when it needs facts not yet extracted, it takes jobs from the same counter.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from ..cache import FactsCache
from ..profile import Profile
from .extract import FUNCTION_ROLES, extract_file
from .model import FileFacts
from .reuse import Reuse

if TYPE_CHECKING:  # multiprocessing is imported where workers start (~15 ms a run without them)
    import multiprocessing
    from multiprocessing.context import ForkContext
    from multiprocessing.sharedctypes import Synchronized

# Below this many files to extract, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 64

# path, bytes, role, and the index of the unit profile it is read for; None for
# the inventory, whose facts (descriptions) no profile changes.
Job = tuple[str, bytes, str, int | None]
Progress = Callable[[str, int, int], None]


def _extract(job: Job, profiles: list[Profile]) -> FileFacts:
    path, data, role, unit = job
    return extract_file(path, data, profiles[unit or 0], role)


def _extraction_key(job: Job, profiles: list[Profile]) -> str:
    """Jobs with equal keys have equal facts: the inventory's depend on no
    profile, the others on what Profile.extraction_key says."""
    _, data, role, unit = job
    return "" if unit is None else f"{role}:{profiles[unit].extraction_key(data)}"


def worker_count(workers: int, files: int) -> int:
    """How many processes to extract `files` files on, at most `workers`."""
    return workers if files >= PARALLEL_THRESHOLD else 1


def _fork_context() -> ForkContext | None:
    """Forking is what lets workers inherit the jobs; where there is none, one process does it all."""
    import multiprocessing

    try:
        return multiprocessing.get_context("fork")
    except ValueError:
        return None


class WorkerError(RuntimeError):
    """A worker failed: the message names the file and the error; its cause carries
    the worker's traceback."""


class _RemoteTracebackError(Exception):
    """The traceback of a worker, as text (tracebacks do not travel between processes)."""


class Batch:
    """The facts of a list of jobs, extracted on `workers` processes started as
    soon as the batch is made (so that the caller can do other work meanwhile),
    or here, and loaded from the cache, as they are asked for.
    A file read alike for several units is extracted (and cached) once.
    Use it as a context manager, which stops the workers."""

    def __init__(
        self,
        jobs: list[Job],
        profiles: list[Profile],
        cache: FactsCache | None,
        workers: int = 1,
        in_order: int = 0,
        background: bool = False,
    ) -> None:
        self.jobs, self.profiles, self.cache = jobs, profiles, cache
        # Made as each job is first met: its extraction key, the first job it
        # repeats (same file, role, bytes and key), whether the cache has its facts.
        self.keys: list[str | None] = [None] * len(jobs)
        self.same_as: list[int | None] = [None] * len(jobs)
        self._first: dict[tuple[str, str, str, bytes], int] = {}
        self.results: dict[int, FileFacts | None] = {}
        self._cached: set[int] = set()
        self.done = self.total = 0  # files extracted, and to extract as far as known
        self._order: list[int] = []  # what the workers take, in turn
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._counter: Synchronized[int] | None = None  # positions of _order taken, shared with the workers
        if workers <= 1:
            # All here, as asked for: a unit found whole in the cache never asks
            # for its files' facts, so their keys and entries are not looked up.
            return
        missing = [i for i in range(len(jobs)) if self._first_met(i) and i not in self._cached]
        # The first `in_order` jobs in order, for a caller that uses them as they
        # come; then the largest files first, so that no worker is left with one at the end.
        self._order = [i for i in missing if i < in_order]
        self._order += sorted((i for i in missing if i >= in_order), key=lambda i: -len(jobs[i][1]))
        # This process extracts too while it waits: one file needs no worker.
        context = _fork_context() if len(missing) > 1 else None
        if context is not None:
            self._counter = context.Value("l", 0)
            self._returned: multiprocessing.Queue[tuple[int, FileFacts | tuple[str, str]]] = context.Queue()
            self._processes = [
                context.Process(target=self._work, args=(background,), daemon=True) for _ in range(workers)
            ]
            for process in self._processes:
                process.start()

    def _first_met(self, index: int) -> bool:
        """Whether job `index` repeats no earlier one; its key and cache state found."""
        return self._unique(index) == index

    def _unique(self, index: int) -> int:
        """The first job that job `index` repeats, itself if none."""
        found = self.same_as[index]
        if found is None:
            path, data, role, _ = self.jobs[index]
            key = self.keys[index] = _extraction_key(self.jobs[index], self.profiles)
            found = self.same_as[index] = self._first.setdefault((path, role, key, data), index)
            if found == index:
                self.results[index] = None
                if self.cache and self.cache.has_facts(key, path, role, data):
                    self._cached.add(index)
                else:
                    self.total += 1
        return found

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        # Work a cached analysis (or an error) made unnecessary is dropped, not waited for.
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join()
        self._processes = []

    def facts(self, progress: Progress | None = None, wanted: Iterable[int] | None = None) -> list[FileFacts]:
        """The facts of the `wanted` jobs (default: all), in that order."""
        found: list[FileFacts] = []
        for i in range(len(self.jobs)) if wanted is None else wanted:
            index = self._unique(i)
            if self.results[index] is None and index in self._cached:
                self._cached.discard(index)
                self.results[index] = self.cache.load(self._key(index), *self._file(index)) if self.cache else None
                if self.results[index] is None:  # damaged since: extracted here
                    self._store(index, self._extract_here(index), None)
            while (facts := self.results[index]) is None:
                self._advance(index, progress)
            found.append(facts)
        return found

    def _key(self, index: int) -> str:
        key = self.keys[index]
        assert key is not None, "a job's key is made when it is first met"
        return key

    def _file(self, index: int) -> tuple[str, str, bytes]:
        path, data, role, _ = self.jobs[index]
        return path, role, data

    # -- main process ------------------------------------------------------

    def _advance(self, wanted: int, progress: Progress | None) -> None:
        """Without workers, extract job `wanted`. Else store facts a worker sent
        back; else extract the next job no worker has taken; else wait for a worker."""
        if not self._processes:
            self._store(wanted, self._extract_here(wanted), progress)
            return
        if self._receive(wait=False, progress=progress):
            return
        position = self._claim()
        if position is not None:
            index = self._order[position]
            self._store(index, self._extract_here(index), progress)
            return
        while not self._receive(wait=True, progress=progress):
            if not any(process.is_alive() for process in self._processes):
                raise WorkerError("a worker process died before sending its facts back")

    def _extract_here(self, index: int) -> FileFacts:
        """Job `index` extracted in this process; a unit's file takes back the
        functions and descriptions its last extraction here gave (facts.reuse),
        and leaves its own for the next. (Workers extract cold runs, whose files are new.)"""
        path, data, role, unit = self.jobs[index]
        if self.cache is None or unit is None or role not in FUNCTION_ROLES:
            return _extract(self.jobs[index], self.profiles)
        key = self._key(index)
        reuse = Reuse(self.cache.load_reuse(key, path, role))
        facts = extract_file(path, data, self.profiles[unit], role, reuse)
        if reuse.changed:
            self.cache.store_reuse(key, path, role, reuse.now)
        return facts

    def _receive(self, wait: bool, progress: Progress | None) -> bool:
        import queue

        try:
            index, facts = self._returned.get(timeout=1.0) if wait else self._returned.get_nowait()
        except queue.Empty:
            return False
        if not isinstance(facts, FileFacts):  # (error, traceback) from the worker
            error, trace = facts
            raise WorkerError(f"{self.jobs[index][0]}: {error}") from _RemoteTracebackError(trace)
        self._store(index, facts, progress)
        return True

    def _claim(self) -> int | None:
        """The next position of _order to extract, taken by this process or a worker; None when all are."""
        assert self._counter is not None, "claimed only where there are workers"
        with self._counter.get_lock():
            position = self._counter.value
            self._counter.value = position + 1
        return position if position < len(self._order) else None

    def _store(self, index: int, facts: FileFacts, progress: Progress | None) -> None:
        path, data, role, _ = self.jobs[index]
        if progress is not None:
            progress(path, self.done, self.total)
        self.done += 1
        self.results[index] = facts
        if self.cache:
            self.cache.store(self._key(index), path, role, data, facts)

    # -- worker processes --------------------------------------------------

    def _work(self, background: bool) -> None:
        gc.disable()  # a short-lived process building acyclic facts: see analyzer/collector.py
        # Ctrl-C reaches the whole process group: the main process stops the
        # workers and says so once, rather than each printing a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # SIGTERM is how the main process stops a worker: not its handler, the default.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        parent = os.getppid()
        _die_with_parent()
        if os.getppid() != parent:
            return  # it died before that took effect
        if background:
            # What the main process waits for first runs on other processes: the
            # scheduler gives those the cores, these what is left.
            os.nice(19)
        while (position := self._claim()) is not None:
            if os.getppid() != parent:
                return  # where _die_with_parent cannot: no one reads what comes back
            index = self._order[position]
            try:
                self._returned.put((index, _extract(self.jobs[index], self.profiles)))
            except Exception as error:
                import traceback  # in a worker, for the rare file that breaks the extractor

                self._returned.put((index, (f"{type(error).__name__}: {error}", traceback.format_exc())))


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """Have the kernel kill this process when its parent dies (Linux), so that a
    main process killed outright (SIGKILL, a cancelled CI job) leaves no worker
    blocked on a queue that no one reads, holding the caller's pipes open."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # no prctl here: the check between jobs remains


def extract_many(
    jobs: list[Job],
    profiles: list[Profile],
    cache: FactsCache | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> list[FileFacts]:
    """The facts of each job, in the jobs' order, on `workers` processes."""
    with Batch(jobs, profiles, cache, worker_count(workers, len(jobs))) as batch:
        return batch.facts(progress)
