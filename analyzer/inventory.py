"""Every VMStateDescription of the tree, for the rules that are not about KVM.

The KVM analysis reads the target's few files; the loader's own conventions
(a subsection needs a needed(), a subsection's name starts with its
parent's) hold for all ~1,200 descriptions of QEMU, in every device. Files
are found by a byte search for `VMStateDescription` before any parsing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .facts.model import Description, Diagnostic, FileFacts
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


def collect_descriptions(
    files: list[InventoryFile], facts: list[FileFacts], known: dict[str, tuple[Description, ...]]
) -> tuple[tuple[Description, ...], tuple[Diagnostic, ...]]:
    """Descriptions and notes from the facts of `files` (those with bytes, in order) and `known` ones."""
    descriptions: list[Description] = [d for found in known.values() for d in found]
    diagnostics = [Diagnostic(path, 0, f"skipped: {problem}") for path, data, problem in files if data is None]
    for file_facts in facts:
        descriptions.extend(file_facts.descriptions)
        # Parse errors elsewhere in device code, and field lists, are not what
        # these rules read; a subsection entry we could not read is.
        diagnostics.extend(d for d in file_facts.diagnostics if "subsection entry not understood" in d.message)
    return tuple(sorted(descriptions, key=lambda d: (d.path, d.line))), tuple(diagnostics)
