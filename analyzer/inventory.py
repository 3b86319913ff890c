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


# Not compiled into a system emulator: user-mode emulation, and the kernel's
# own headers (whose `vmsa` and friends are not QEMU's).
_NOT_SYSTEM = ("linux-user/", "bsd-user/", "linux-headers/")

InventoryFile = tuple[str, bytes | None, str | None, str]  # path, bytes, why it is unusable, role


def candidate_paths(reader: TreeReader) -> list[str]:
    """Every C file, header and `.c.inc` file the inventory may read."""
    return reader.c_files(_EXCLUDED + _NOT_SYSTEM, (".c", ".h", ".inc"))


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
        if data is None or b"\0" in data:
            continue
        if path.endswith(".c") and b"VMStateDescription" in data:
            yield path, data, None, "inventory"
        elif b"vms" in data or b"vmm" in data:
            yield path, data, None, "references"


def collect_descriptions(
    files: list[InventoryFile], facts: list[FileFacts], known: dict[str, tuple[Description, ...]]
) -> tuple[tuple[Description, ...], tuple[Diagnostic, ...]]:
    """Descriptions and notes from the facts of `files` (those with bytes, in order) and `known` ones."""
    descriptions: list[Description] = [d for found in known.values() for d in found]
    diagnostics = [Diagnostic(path, 0, f"skipped: {problem}") for path, data, problem, _ in files if data is None]
    for file_facts in facts:
        descriptions.extend(file_facts.descriptions)  # none from `references` files
        # Parse errors elsewhere in device code, and field lists, are not what
        # these rules read; a subsection entry we could not read is.
        diagnostics.extend(d for d in file_facts.diagnostics if "subsection entry not understood" in d.message)
    return tuple(sorted(descriptions, key=lambda d: (d.path, d.line))), tuple(diagnostics)
