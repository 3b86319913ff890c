"""Every VMStateDescription of the tree, for the rules that are not about KVM.

The KVM analysis reads the target's few files; the loader's own conventions
(a subsection needs a needed(), a subsection's name starts with its
parent's) hold for all ~1,200 descriptions of QEMU, in every device. Files
are found by a byte search for `VMStateDescription` before any parsing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

from .cache import Deferred
from .facts.model import Description, Diagnostic, FileFacts, Reference
from .record import Record
from .tree import TreeReader, UnusableFileError, usable

# Not part of what a QEMU binary migrates.
_EXCLUDED = ("tests/", "scripts/", "roms/", "subprojects/", "contrib/", "docs/")


# Not compiled into a system emulator: user-mode emulation, and the kernel's
# own headers (whose `vmsa` and friends are not QEMU's).
_NOT_SYSTEM = ("linux-user/", "bsd-user/", "linux-headers/")

InventoryFile = tuple[str, bytes | None, str | None, str]  # path, bytes, why it is unusable, role


def candidate_paths(reader: TreeReader) -> list[str]:
    """Every C file, header and `.c.inc` file the inventory may read."""
    return reader.c_files(_EXCLUDED + _NOT_SYSTEM, (".c", ".h", ".inc"))


def git_blob_id(data: bytes) -> str:
    """The id git gives these bytes as a blob: the content key of a file on disk
    and of one in a revision alike, so that their facts are shared."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class FileEntry(Record):
    """What a run learned of one candidate file, for the next run to reuse unread."""

    blob: str | None  # git blob id of its bytes; None when it has none (unusable)
    stat: tuple[int, int, int, int] | None  # DirectoryReader.stat_stamp when read, if not racy
    role: str | None  # `inventory`, `references`, or None: neither (or unusable)
    problem: str | None = None  # why it is unusable


# A file's inventory facts (inventory_facts), with the blob id of the bytes they are of.
KnownFacts = dict[str, tuple[str, Deferred[FileFacts]]]


class TreeSnapshot(Record):
    """The entries of a tree's candidate files, bound to the tree they describe,
    and the inventory facts of those that have a role and no problem, by path.
    The facts (some 900 files) are unpickled only when the inventory's part is
    made again: every run reads the entries, few runs the facts."""

    root: str
    entries: dict[str, FileEntry]
    facts: Deferred[KnownFacts]


class InventoryPart(Record):
    """What the inventory's files give the tree-wide part, cached by their
    content (InventoryScan.content): a change in the units' files alone
    unpickles none of their facts, and stores this part again by its bytes."""

    descriptions: Deferred[tuple[Description, ...]]  # by (path, line)
    references: Deferred[tuple[tuple[str, tuple[Reference, ...]], ...]]  # of the files that have some
    readable: tuple[str, ...]  # the inventory's files it could read
    problems: tuple[tuple[str, str], ...]  # (path, why) of those it could not
    diagnostics: tuple[Diagnostic, ...]


def inventory_part(
    paths: Sequence[str], entries: Mapping[str, FileEntry], facts: Mapping[str, FileFacts]
) -> InventoryPart:
    """The part given by the inventory's files (`paths`, in order), from their
    `entries` and the inventory facts of those that have no problem."""
    problems = tuple((p, entries[p].problem or "") for p in paths if entries[p].problem is not None)
    readable = tuple(p for p in paths if entries[p].problem is None)
    ordered = [facts[p] for p in readable]
    descriptions = sorted((d for ff in ordered for d in ff.descriptions), key=lambda d: (d.path, d.line))
    diagnostics = [Diagnostic(path, 0, f"skipped: {problem}") for path, problem in problems]
    diagnostics += [d for ff in ordered for d in ff.diagnostics]
    references = tuple((ff.path, ff.references) for ff in ordered if ff.references)
    return InventoryPart(Deferred(tuple(descriptions)), Deferred(references), readable, problems, tuple(diagnostics))


class InventoryScan(Record):
    """The inventory's files (`paths`, in order), the entries of every file
    scanned, and the bytes of those whose facts are to extract: new or
    changed since the snapshot."""

    paths: list[str]
    entries: dict[str, FileEntry]
    data: dict[str, bytes]

    def content(self) -> list[str]:
        """What the analysis reads of these files: a blob id or a problem, for the analysis key."""
        return [f"{p}:{self.entries[p].blob or self.entries[p].problem}:{self.entries[p].role}" for p in self.paths]


def scan_inventory(
    reader: TreeReader, paths: list[str], skip: Iterable[str], previous: TreeSnapshot | None
) -> InventoryScan:
    """The entries of `paths` outside `skip`, and which are inventory or
    references files (see description_files). A file the `previous` snapshot knows
    by its blob id (a revision) or its stat data (a directory) is not read."""
    from .git import RevisionReader
    from .tree import DirectoryReader

    skipped = set(skip)
    known = previous.entries if previous is not None else {}
    scan = InventoryScan([], {}, {})  # filled in place
    for path in paths:
        if path in skipped:
            continue
        prior = known.get(path)
        entry: FileEntry | None = None
        blob = stamp = None
        if isinstance(reader, RevisionReader):
            blob = reader.blob_id(path)
            if prior is not None and prior.blob is not None and prior.blob == blob:
                entry = prior
        elif isinstance(reader, DirectoryReader):
            stamp = reader.stat_stamp(path)
            if prior is not None and prior.blob is not None and stamp is not None and prior.stat == stamp:
                entry = prior
        if entry is None:
            try:
                data = reader.read(path)
            except UnusableFileError as problem:
                entry = FileEntry(None, None, "inventory", str(problem))
                data = None
            else:
                if data is None:
                    continue
                blob = blob or git_blob_id(data)
                entry = FileEntry(blob, stamp, _role(path, data))
                if entry.role is not None and (why := _unusable(data)) is not None:
                    entry = FileEntry(None, None, entry.role, why)  # noted and warned about
                elif prior is not None and prior.blob == blob and prior.role == entry.role:
                    pass  # touched, not changed: the facts the snapshot has are of these bytes
                elif entry.role is not None:
                    scan.data[path] = data
        scan.entries[path] = entry
        if entry.role is not None:
            scan.paths.append(path)
    return scan


def _unusable(data: bytes) -> str | None:
    """Why a file these rules would read cannot be used (NUL bytes), or None."""
    try:
        usable(data)
    except UnusableFileError as problem:
        return str(problem)
    return None


def _role(path: str, data: bytes) -> str | None:
    """What these rules read a file for, NUL bytes or not: `inventory`, `references` or None."""
    if path.endswith(".c") and b"VMStateDescription" in data:
        return "inventory"
    if b"vms" in data or b"vmm" in data:
        return "references"
    return None


def description_files(
    reader: TreeReader, skip: Iterable[str] = (), paths: list[str] | None = None
) -> Iterator[InventoryFile]:
    """(path, bytes, problem, role) of every C file that mentions VMStateDescription
    (role `inventory`), and of every other C file, header or `.c.inc` file
    that may name one (role `references`: `vms`/`vmm` in its bytes, as in
    vmstate_*, vmsd, vms_*), among `paths` (default: candidate_paths)."""
    skipped = set(skip)
    for path in candidate_paths(reader) if paths is None else paths:
        if path in skipped:
            continue
        try:
            data = reader.read(path)
        except UnusableFileError as problem:
            yield path, None, str(problem), "inventory"
            continue
        if data is not None and (role := _role(path, data)) is not None:
            why = _unusable(data)
            yield path, None if why else data, why, role


def inventory_facts(facts: FileFacts) -> FileFacts:
    """What inventory_part and the tree-wide rules read of an inventory file's facts.

    Not the descriptions' field lists: those rules read how descriptions are
    named, listed and registered, and some 5,000 fields would be most of what
    every warm run loads back from the cache."""
    return FileFacts(
        path=facts.path,
        descriptions=tuple(d._replace(fields=()) for d in facts.descriptions),
        references=facts.references,
        # Parse errors elsewhere in device code, and field lists, are not what
        # these rules read; a subsection entry we could not read is.
        diagnostics=tuple(d for d in facts.diagnostics if "subsection entry not understood" in d.message),
    )
