"""Every VMStateDescription of the tree, for the rules that are not about KVM.

The KVM analysis reads the target's few files; the loader's own conventions
(a subsection needs a needed(), a subsection's name starts with its
parent's) hold for all ~1,200 descriptions of QEMU, in every device. Files
are found by a byte search for `VMStateDescription` before any parsing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

from .cache import FactsCache
from .facts.extract import extract_file
from .facts.model import Description, Diagnostic, FileFacts
from .profile import Profile
from .tree import TreeReader, UnusableFileError

# Not part of what a QEMU binary migrates.
_EXCLUDED = ("tests/", "scripts/", "roms/", "subprojects/", "contrib/", "docs/")


InventoryFile = tuple[str, bytes | None, str | None]  # path, bytes, why it is unusable


def description_files(reader: TreeReader, skip: Iterable[str] = ()) -> Iterator[InventoryFile]:
    """(path, bytes, problem) of every C file that mentions VMStateDescription."""
    skipped = set(skip)
    for path in reader.c_files(_EXCLUDED):
        if path in skipped:
            continue
        try:
            data = reader.read(path)
        except UnusableFileError as problem:
            yield path, None, str(problem)
            continue
        if data is not None and b"VMStateDescription" in data and b"\0" not in data:
            yield path, data, None


# Below this many files to parse, starting worker processes costs more than it saves.
_PARALLEL_THRESHOLD = 64


def _extract_inventory(job: tuple[str, bytes, Profile]) -> FileFacts:
    path, data, profile = job
    return extract_file(path, data, profile, "inventory")


def scan_descriptions(
    files: list[InventoryFile],
    profile: Profile,
    known: dict[str, tuple[Description, ...]],
    cache: FactsCache | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    jobs: int = 1,
) -> tuple[tuple[Description, ...], tuple[Diagnostic, ...]]:
    """Descriptions of `files` (from description_files) plus `known` ones, from files already parsed.

    Files the cache does not have are parsed on `jobs` processes; results are
    taken in file order, so the output does not depend on scheduling.
    """
    descriptions: list[Description] = [d for found in known.values() for d in found]
    diagnostics: list[Diagnostic] = []
    facts_by_path: dict[str, FileFacts] = {}
    missing: list[tuple[str, bytes, Profile]] = []
    for path, data, problem in files:
        if data is None:
            diagnostics.append(Diagnostic(path, 0, f"skipped: {problem}"))
            continue
        cached = cache.load(path, "inventory", data) if cache else None
        if cached is not None:
            facts_by_path[path] = cached
        else:
            missing.append((path, data, profile))
    if jobs > 1 and len(missing) >= _PARALLEL_THRESHOLD:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            extracted = pool.map(_extract_inventory, missing, chunksize=8)
            results = zip(missing, extracted, strict=True)
            _collect(results, facts_by_path, cache, progress, len(missing))
    else:
        _collect(((job, _extract_inventory(job)) for job in missing), facts_by_path, cache, progress, len(missing))
    for path, data, _ in files:
        if data is None:
            continue
        facts = facts_by_path[path]
        descriptions.extend(facts.descriptions)
        # Parse errors elsewhere in device code, and field lists, are not what
        # these rules read; a subsection entry we could not read is.
        diagnostics.extend(d for d in facts.diagnostics if "subsection entry not understood" in d.message)
    return tuple(sorted(descriptions, key=lambda d: (d.path, d.line))), tuple(diagnostics)


def _collect(
    results: Iterable[tuple[tuple[str, bytes, Profile], FileFacts]],
    facts_by_path: dict[str, FileFacts],
    cache: FactsCache | None,
    progress: Callable[[str, int, int], None] | None,
    total: int,
) -> None:
    for index, ((path, data, _), facts) in enumerate(results):
        if progress is not None:
            progress(path, index, total)
        facts_by_path[path] = facts
        if cache:
            cache.store(path, "inventory", data, facts)
