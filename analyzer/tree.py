"""The QEMU source tree under analysis: which files to read, read-only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .profile import Profile


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the tree root, with forward slashes
    role: str
    data: bytes


@dataclass(frozen=True)
class QemuTree:
    root: Path
    version: str | None
    files: tuple[SourceFile, ...]
    missing: tuple[str, ...]  # expected files this tree does not have

    @property
    def kvm_layout(self) -> str:
        kvm = [f.path for f in self.files if f.role == "kvm"]
        return kvm[0] if kvm else "none"


def _read(path: Path, shown: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{shown}: cannot read: {error.strerror or error}") from None
    if b"\0" in data:
        raise InputError(f"{shown}: contains NUL bytes, not a C source file")
    return data


def open_tree(root: Path, profile: Profile) -> QemuTree:
    """Locate the profile's files under `root`; raise InputError when it is not a QEMU tree."""
    if not root.exists():
        raise InputError(f"{root}: no such directory")
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (give the top of a QEMU source tree)")
    if not (root / "target").is_dir() or not (root / "include").is_dir():
        raise InputError(f"{root}: not a QEMU source tree (no target/ and include/ directories)")
    files: list[SourceFile] = []
    missing: list[str] = []
    for role, candidates in profile.files.items():
        present = [c for c in candidates if (root / c).is_file()]
        files.extend(SourceFile(c, role, _read(root / c, c)) for c in present)
        if role in profile.layout_roles:
            # Candidates are the same file in different QEMU layouts: one is enough.
            if not present:
                wanted = " or ".join(candidates)
                raise InputError(f"{root}: not a QEMU tree with {profile.target} KVM support (missing {wanted})")
        else:
            missing.extend(c for c in candidates if c not in present)
    version_file = root / "VERSION"
    version = None
    if version_file.is_file():
        version = version_file.read_text(encoding="utf-8", errors="replace").strip() or None
    return QemuTree(root, version, tuple(files), tuple(missing))
