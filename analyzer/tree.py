"""The QEMU source tree under analysis: which files to read, read-only.

A tree is read through a `TreeReader`: the files on disk (`DirectoryReader`)
or a git revision (`analyzer.git.RevisionReader`), so that `check --base`
never touches the user's working tree or index.

A file that cannot be used (unreadable, a dangling link, NUL bytes, a
generated monster) is skipped with a note when the analysis can do without
it, and stops the run with one error line when it cannot (machine.c, kvm.c).
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import stat
import time
from pathlib import Path
from typing import Protocol

from .errors import InputError
from .profile import Profile
from .record import Record

# Larger than any hand-written QEMU file (cpu.c is 0.4 MB): a generated file.
MAX_FILE_BYTES = 8 * 1024 * 1024
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

# Git's "racy clean" rule: a file written in the same timestamp tick as its
# stat data were taken can be written again, same length, within that tick,
# and keep those stat data. A file modified that recently has no stamp until
# the tick is past; two seconds is the coarsest granularity in use (FAT;
# ext2 and HFS+ have one).
RACY_NS = 2 * 10**9


class UnusableFileError(Exception):
    """A file exists but cannot be analysed; the message says why."""


class UnusableRequiredFileError(InputError):
    """A file the unit cannot do without exists but cannot be analysed."""

    def __init__(self, label: str, path: str, problem: str) -> None:
        super().__init__(f"{label}: {path}: {problem}")
        self.path, self.problem = path, problem


class TreeReader(Protocol):
    label: str  # how the tree is named in messages: a path, or `REV (commit)`
    # The directory the tree is read from (the same for a checkout and its
    # revisions), where what a run learned is found by the next; None: nowhere.
    root_id: str | None
    # A key naming every byte of the tree, known without listing or reading
    # it (a git revision's tree id); None when there is none.
    content_id: str | None

    def has_directory(self, path: str) -> bool: ...

    def c_files(self, exclude: tuple[str, ...] = (), suffixes: tuple[str, ...] = (".c",)) -> list[str]:
        """Every file ending in one of `suffixes` (`*.c`), relative and sorted, outside the `exclude` prefixes."""
        ...

    def read(self, path: str) -> bytes | None:
        """The file's bytes, None when the tree has no such file; UnusableFileError otherwise."""
        ...

    def stamps(self, paths: list[str]) -> str | None:
        """A digest that changes whenever one of `paths` does, computed without
        reading them; None when the reader has no such shortcut."""
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
        self.root_id: str | None = os.path.realpath(root)
        self.content_id: str | None = None  # files on disk are known by their stat data (stamps)
        self._prefix = str(root) + os.sep  # read() and stamps() build strings, not Paths: cheaper
        self._undecodable: set[str] = set()  # names listed escaped, as they are not UTF-8
        self._stat_stamps: dict[str, tuple[int, int, int, int] | None] = {}  # what stamps() saw

    def has_directory(self, path: str) -> bool:
        return (self.root / path).is_dir()

    def c_files(self, exclude: tuple[str, ...] = (), suffixes: tuple[str, ...] = (".c",)) -> list[str]:
        # os.scandir by hand rather than os.walk: a third of the cost on a
        # QEMU tree's ~700 directories, which every check lists.
        found: list[str] = []
        pending = [""]  # directories to list, as prefixes of their files' paths
        while pending:
            prefix = pending.pop()
            try:
                with os.scandir(self._prefix + prefix if prefix else self.root) as listing:
                    entries = list(listing)
            except OSError:
                continue  # unreadable: as os.walk, not listed
            if prefix and any(entry.name == ".git" for entry in entries):
                # A submodule's checkout (or another repository): not this
                # tree's files, and not in its git revisions either.
                continue
            for entry in entries:
                try:
                    is_directory = entry.is_dir()
                except OSError:
                    is_directory = False
                if not is_directory:
                    if entry.name.endswith(suffixes):
                        found.append(self._listed(prefix + entry.name))
                elif (
                    entry.name != ".git"
                    and not entry.is_symlink()
                    and not (prefix + entry.name + "/").startswith(exclude)
                ):
                    # Links to directories are not followed; excluded directories
                    # are not entered at all: roms/ and tests/ are big. Nor is the
                    # repository's own .git, which no revision lists either, and
                    # where a fresh clone or commit leaves some 40,000 loose objects.
                    pending.append(prefix + entry.name + "/")
        return sorted(found)

    def _listed(self, path: str) -> str:
        """`path`, or when it is not UTF-8 (os.walk gives its bytes as surrogates,
        which no report can encode) its escaped form, which read() refuses."""
        if path.isascii():
            return path
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            self._undecodable.add(shown)
            return shown
        return path

    def stamps(self, paths: list[str]) -> str | None:
        # Size, modification and change times, inode: what a write changes (as
        # git's index and make rely on), for ~4,800 stat calls instead of reads.
        racy = time.time_ns() - RACY_NS
        self._stat_stamps = {}  # a reader analysed again sees the files as they are now
        seen: dict[str, tuple[int, int, int, int] | int] = {}  # or why it could not be stat'ed
        for path in paths:
            try:
                s = os.stat(self._prefix + path)  # noqa: PTH116 (4,800 Paths cost more than the stats)
            except OSError as error:
                seen[path] = error.errno or 0
                continue
            if s.st_mtime_ns > racy:
                self._stat_stamps[path] = None
                return None  # see RACY_NS: these stat data may not change with the next write
            stamp = (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino)
            seen[path] = self._stat_stamps[path] = stamp
        # One digest of them all (of plain strings and numbers: pickle's bytes are
        # theirs alone), not one update per file.
        return hashlib.sha256(pickle.dumps(seen, protocol=5)).hexdigest()

    def stat_stamp(self, path: str) -> tuple[int, int, int, int] | None:
        """One file's stat data as stamps() takes them; None when they cannot be
        trusted to change with its bytes (racy, see RACY_NS) or it cannot be stat'ed.
        Those stamps() took in this run, when it did: the inventory asks for
        the same 4,700 files right after."""
        if path in self._stat_stamps:
            return self._stat_stamps[path]
        try:
            s = os.stat(self._prefix + path)  # noqa: PTH116
        except OSError:
            return None
        if s.st_mtime_ns > time.time_ns() - RACY_NS:
            return None
        return (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino)

    def read(self, path: str) -> bytes | None:
        # os calls on a descriptor rather than Path methods: the inventory reads
        # ~4,800 files, and this costs a third as much. O_NONBLOCK: opening a
        # FIFO must not wait for a writer (it is then refused by its mode).
        if path in self._undecodable:
            raise UnusableFileError("file name is not valid UTF-8")
        name = self._prefix + path
        try:
            descriptor = os.open(name, os.O_RDONLY | _NONBLOCK)
        except FileNotFoundError:
            if Path(name).is_symlink():
                raise UnusableFileError("dangling symbolic link") from None
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnusableFileError("symbolic link loop") from None
            raise UnusableFileError(f"cannot read: {error.strerror or error}") from None
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise UnusableFileError("not a regular file")
            if status.st_size > MAX_FILE_BYTES:
                raise UnusableFileError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, likely generated")
            data = os.read(descriptor, status.st_size + 1)
            if len(data) > status.st_size:  # it grew since fstat: read to its end
                data += b"".join(iter(lambda: os.read(descriptor, 1 << 20), b""))
            return data
        except OSError as error:
            raise UnusableFileError(f"cannot read: {error.strerror or error}") from None
        finally:
            os.close(descriptor)


class ReadOnce:
    """A reader that reads each file once: the units of several targets share
    files (accel/kvm/kvm-all.c, hw/core/machine.c), and finding which targets a
    tree has reads their machine.c and KVM files first. Equal files are then
    one bytes object, which the analysis cache stores once."""

    def __init__(self, reader: TreeReader) -> None:
        self.reader = reader
        self.label = reader.label
        self.root_id = reader.root_id
        self.content_id = reader.content_id
        self._read: dict[str, bytes | UnusableFileError | None] = {}

    def has_directory(self, path: str) -> bool:
        return self.reader.has_directory(path)

    def c_files(self, exclude: tuple[str, ...] = (), suffixes: tuple[str, ...] = (".c",)) -> list[str]:
        return self.reader.c_files(exclude, suffixes)

    def stamps(self, paths: list[str]) -> str | None:
        return self.reader.stamps(paths)

    def read(self, path: str) -> bytes | None:
        if path not in self._read:
            try:
                self._read[path] = self.reader.read(path)
            except UnusableFileError as problem:
                self._read[path] = problem
        found = self._read[path]
        if isinstance(found, UnusableFileError):
            raise found
        return found


class SourceFile(Record):
    path: str  # relative to the tree root, with forward slashes
    role: str
    data: bytes


class QemuTree(Record):
    label: str
    version: str | None
    files: tuple[SourceFile, ...]
    missing: tuple[str, ...]  # expected files this tree does not have
    skipped: tuple[tuple[str, str], ...] = ()  # (path, why) of files present but unusable

    @property
    def kvm_layout(self) -> str:
        kvm = [f.path for f in self.files if f.role == "kvm"]
        return kvm[0] if kvm else "none"


def usable(data: bytes) -> bytes:
    """`data`, or UnusableFileError when it cannot be a C source file."""
    if b"\0" in data:
        raise UnusableFileError("contains NUL bytes, not a C source file")
    if len(data) > MAX_FILE_BYTES:
        raise UnusableFileError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, likely generated")
    return data


def open_tree(source: TreeReader | Path, profile: Profile) -> QemuTree:
    """Locate the profile's files; raise InputError when this is not a usable QEMU tree."""
    reader = DirectoryReader(source) if isinstance(source, Path) else source
    if not reader.has_directory("target") or not reader.has_directory("include"):
        raise InputError(f"{reader.label}: not a QEMU source tree (no target/ and include/ directories)")
    files: list[SourceFile] = []
    missing: list[str] = []
    skipped: list[tuple[str, str]] = []
    for role, candidates in profile.files.items():
        found: list[str] = []
        for candidate in candidates:
            try:
                data = reader.read(candidate)
                if data is not None:
                    data = usable(data)
                    if role == "vmstate" and b"VMStateDescription" not in data:
                        # Not the file this role names (a link to a README, say): auditing
                        # it would find nothing to report, and exit 0.
                        raise UnusableFileError("defines no VMStateDescription, not a description file")
                    files.append(SourceFile(candidate, role, data))
                    found.append(candidate)
            except UnusableFileError as problem:
                if role in profile.layout_roles:
                    raise UnusableRequiredFileError(reader.label, candidate, str(problem)) from None
                skipped.append((candidate, str(problem)))
                found.append(candidate)
        if role in profile.layout_roles:
            # Candidates are the same file in different QEMU layouts: one is enough.
            if not found:
                wanted = " or ".join(candidates)
                raise InputError(
                    f"{reader.label}: not a QEMU tree with {profile.target} KVM support (missing {wanted})"
                )
        else:
            missing.extend(c for c in candidates if c not in found)
    try:
        version_data = reader.read("VERSION")
    except UnusableFileError:
        version_data = None
    version = None
    if version_data:
        version = version_data.decode("utf-8", "replace").strip()[:64] or None
    return QemuTree(reader.label, version, tuple(files), tuple(missing), tuple(skipped))
