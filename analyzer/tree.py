"""The QEMU source tree under analysis: which files to read, read-only.

A tree is read through a `TreeReader`: the files on disk (`DirectoryReader`)
or a git revision (`analyzer.git.RevisionReader`), so that `check --base`
never touches the user's working tree or index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import InputError
from .profile import Profile


class TreeReader(Protocol):
    label: str  # how the tree is named in messages: a path, or `REV in REPO`

    def has_directory(self, path: str) -> bool: ...

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when the tree has no such file."""
        ...


class DirectoryReader:
    """Files of an unpacked tree on disk."""

    def __init__(self, root: Path) -> None:
        if not root.exists():
            raise InputError(f"{root}: no such directory")
        if not root.is_dir():
            raise InputError(f"{root}: not a directory (give the top of a QEMU source tree)")
        self.root = root
        self.label = str(root)

    def has_directory(self, path: str) -> bool:
        return (self.root / path).is_dir()

    def read(self, path: str) -> bytes | None:
        file = self.root / path
        if not file.is_file():
            return None
        try:
            return file.read_bytes()
        except OSError as error:
            raise InputError(f"{path}: cannot read: {error.strerror or error}") from None


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the tree root, with forward slashes
    role: str
    data: bytes


@dataclass(frozen=True)
class QemuTree:
    label: str
    version: str | None
    files: tuple[SourceFile, ...]
    missing: tuple[str, ...]  # expected files this tree does not have

    @property
    def kvm_layout(self) -> str:
        kvm = [f.path for f in self.files if f.role == "kvm"]
        return kvm[0] if kvm else "none"


def _checked(path: str, data: bytes) -> bytes:
    if b"\0" in data:
        raise InputError(f"{path}: contains NUL bytes, not a C source file")
    return data


def open_tree(source: TreeReader | Path, profile: Profile) -> QemuTree:
    """Locate the profile's files; raise InputError when this is not a QEMU tree."""
    reader = DirectoryReader(source) if isinstance(source, Path) else source
    if not reader.has_directory("target") or not reader.has_directory("include"):
        raise InputError(f"{reader.label}: not a QEMU source tree (no target/ and include/ directories)")
    files: list[SourceFile] = []
    missing: list[str] = []
    for role, candidates in profile.files.items():
        present = [(c, data) for c in candidates if (data := reader.read(c)) is not None]
        files.extend(SourceFile(c, role, _checked(c, data)) for c, data in present)
        if role in profile.layout_roles:
            # Candidates are the same file in different QEMU layouts: one is enough.
            if not present:
                wanted = " or ".join(candidates)
                raise InputError(
                    f"{reader.label}: not a QEMU tree with {profile.target} KVM support (missing {wanted})"
                )
        else:
            found = {c for c, _ in present}
            missing.extend(c for c in candidates if c not in found)
    version_data = reader.read("VERSION")
    version = version_data.decode("utf-8", "replace").strip() or None if version_data else None
    return QemuTree(reader.label, version, tuple(files), tuple(missing))
