"""Facts cached per file by content, analyses per unit and per tree, outside
the analysed tree.

A re-run on an unchanged tree loads its analysis in one read; the base and
head of `check`, sharing most files, parse only what changed and re-join
only the units whose files changed. Every key covers the analyzer's own code
and data, so a new version of the tool never reads what an older one wrote.
A cache that cannot be read or written is simply not used.

Entries are pickles, which load several times faster than any data format
that would rebuild these records, and loading a pickle can run code. So the
cache is used only in a directory that this user owns and no one else may
write to (it is created 0700), each entry is opened without following a
link and loaded only when this user owns it and no one else may write it,
and each entry starts with the key it was stored under: a file copied or
renamed into another entry's place, or damaged, is ignored and recomputed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import pwd
import stat
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Generic, TypeVar

from .collector import collector_paused
from .facts.model import FileFacts, Function
from .facts.reuse import Described, Reused
from .packages import package_directory
from .profile import Profile

_FORMAT = b"vmstate-guard cache v2"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_Entry = TypeVar("_Entry")
_Value = TypeVar("_Value")


class Deferred(Generic[_Value]):
    """A value pickled apart from what holds it, and unpickled when first asked
    for: the bulk of a cached unit (its files' facts, its capability solution)
    costs nothing to a report that never reads it. Its bytes travel inside the
    entry that holds it, under that entry's checks, and are kept once read: an
    entry stored again with it (the inventory's part inside a new tree-wide
    part) copies them rather than pickling the value again."""

    __slots__ = ("_pickled", "_read", "_value")

    def __init__(self, value: _Value) -> None:
        self._value: _Value | None = value
        self._pickled: bytes | None = None
        self._read = True

    @property
    def loaded(self) -> bool:
        """Whether the value is in memory: given, or unpickled by get()."""
        return self._read

    def get(self) -> _Value:
        if not self._read:
            with collector_paused():
                self._value = pickle.loads(self._pickled)  # type: ignore[arg-type]
            self._read = True
        return self._value  # type: ignore[return-value]

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        if self._pickled is None:
            self._pickled = pickle.dumps(self._value, protocol=pickle.HIGHEST_PROTOCOL)
        return _deferred, (self._pickled,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Deferred) and self.get() == other.get()

    __hash__ = None  # type: ignore[assignment]


def _deferred(pickled: bytes) -> Deferred[object]:
    found: Deferred[object] = Deferred(None)
    found._pickled, found._read = pickled, False
    return found


def cache_directory() -> Path | None:
    """Where facts are cached: $VMSTATE_GUARD_CACHE, else the user's cache directory."""
    return user_cache_directory("facts", "VMSTATE_GUARD_CACHE")


def user_cache_directory(name: str, variable: str) -> Path | None:
    """$variable, else `vmstate-guard/<name>` in the XDG cache directory; None when
    there is no absolute home to put it in (`HOME=""` must not mean the filesystem root)."""
    explicit = os.environ.get(variable)
    if explicit:
        return Path(explicit).absolute()
    xdg = Path(os.environ.get("XDG_CACHE_HOME", ""))
    if xdg.is_absolute():  # a relative one is invalid (XDG Base Directory specification)
        return xdg / "vmstate-guard" / name
    home = Path(os.environ.get("HOME", ""))
    if not home.is_absolute():
        try:
            home = Path(pwd.getpwuid(os.getuid()).pw_dir)
        except KeyError:
            return None
    return home / ".cache" / "vmstate-guard" / name if home.is_absolute() else None


@cache
def _code_digest() -> bytes:
    """A digest of the code and data that decide what facts a file gives."""
    digest = hashlib.sha256(_FORMAT)
    names = ("preprocess.py", "syntax.py", "record.py", "profile.py", "facts", "queries")
    sources = [("analyzer", name) for name in names]
    for package, relative in [*sources, ("analyzer.rules", "targets")]:
        _digest_tree(package_directory(package) / relative, f"{package}/{relative}", digest)
    return digest.digest()


@cache
def _analysis_digest() -> bytes:
    """A digest of all the code and data a whole analysis depends on: the
    analyzer and the rules (a unit's analysis keeps what its rules found)."""
    digest = hashlib.sha256(_FORMAT + b" analysis")
    _digest_tree(package_directory("analyzer"), "analyzer", digest)
    _digest_tree(package_directory("analyzer.rules"), "analyzer.rules", digest)
    return digest.digest()


def _digest_tree(path: Path, name: str, digest: hashlib._Hash) -> None:
    if path.is_dir():
        for child in sorted(path.iterdir()):
            # Subpackages too: a change in analyzer/facts/ changes every analysis.
            if child.suffix in (".py", ".scm", ".toml", ".json") or (child.is_dir() and child.name != "__pycache__"):
                _digest_tree(child, f"{name}/{child.name}", digest)
    elif path.is_file():
        digest.update(name.encode() + b"\0" + path.read_bytes())


def key_of(parts: Sequence[str | bytes], code: bytes | None = None) -> str:
    """A hex key over the analyzer's code (default: all of it) and `parts`, each length-prefixed."""
    key = hashlib.sha256(_analysis_digest() if code is None else code)
    for part in parts:
        encoded = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
        key.update(len(encoded).to_bytes(8, "little") + encoded)
    return key.hexdigest()


def _is_key(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _private(status: os.stat_result) -> bool:
    """Owned by this user, and writable by no one else."""
    return status.st_uid == os.getuid() and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class FactsCache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.problem: str | None = None  # why the cache is not used, for a warning
        if directory is None:
            return
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            status = directory.stat()
        except OSError:
            self.directory = None  # unusable: simply not used
            return
        if not stat.S_ISDIR(status.st_mode) or not _private(status):
            self.directory = None
            self.problem = (
                f"cache directory {directory} is not private to this user (another may write to it, "
                "and its entries are code to load): not used; choose another with VMSTATE_GUARD_CACHE"
            )

    # -- entries -----------------------------------------------------------

    def _path(self, kind: str, key: str) -> Path | None:
        if self.directory is None or not _is_key(key):
            return None
        return self.directory / kind / key[:2] / key

    def load_entry(self, kind: str, key: str, expected: type[_Entry]) -> _Entry | None:
        """The object stored under (kind, key), when it is an `expected` and the entry is sound."""
        path = self._path(kind, key)
        if path is None:
            return None
        try:
            descriptor = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except OSError:
            return None
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode) or not _private(status):
                return None
            with os.fdopen(os.dup(descriptor), "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        finally:
            os.close(descriptor)
        header = _FORMAT + b" " + kind.encode() + b" " + key.encode() + b"\n"
        if not data.startswith(header):
            return None  # damaged, or another entry's bytes under this name
        try:
            with collector_paused():
                found: object = pickle.loads(memoryview(data)[len(header) :])
        except Exception:
            return None
        return found if isinstance(found, expected) else None

    def has_entry(self, kind: str, key: str) -> bool:
        """Whether an entry is stored under (kind, key); whether it is sound, load_entry says."""
        path = self._path(kind, key)
        return path is not None and path.is_file()

    def store_entry(self, kind: str, key: str, value: object) -> None:
        path = self._path(kind, key)
        if path is not None:
            header = _FORMAT + b" " + kind.encode() + b" " + key.encode() + b"\n"
            self._write(path, header + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def _write(entry: Path, data: bytes) -> None:
        """Write atomically; a cache that cannot be written is simply not used."""
        temporary: str | None = None
        try:
            entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".entry.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(temporary).replace(entry)
            temporary = None
        except OSError:
            return
        finally:
            if temporary is not None:  # a full disk: leave no partial entry behind
                with contextlib.suppress(OSError):
                    Path(temporary).unlink()

    # -- facts of one file ---------------------------------------------------

    def _facts_key(self, extraction: str, path: str, role: str, data: bytes) -> str:
        return key_of((extraction, path, role, data), _code_digest())

    def load(self, extraction: str, path: str, role: str, data: bytes) -> FileFacts | None:
        """The facts of `path` as extracted with `extraction` (what of a profile the
        extractor reads, Profile.extraction_key; "" for the inventory)."""
        facts = self.load_entry("facts", self._facts_key(extraction, path, role, data), FileFacts)
        return facts if facts is not None and facts.path == path else None

    def has_facts(self, extraction: str, path: str, role: str, data: bytes) -> bool:
        """Whether facts are stored for these bytes (whether they load, load says)."""
        return self.has_entry("facts", self._facts_key(extraction, path, role, data))

    def store(self, extraction: str, path: str, role: str, data: bytes, facts: FileFacts) -> None:
        self.store_entry("facts", self._facts_key(extraction, path, role, data), facts)

    # -- what a file's last extraction gave, to take back (facts.reuse) --------

    @staticmethod
    def _reuse_key(extraction: str, path: str, role: str) -> str:
        return key_of(("reuse", extraction, path, role), _code_digest())

    def load_reuse(self, extraction: str, path: str, role: str) -> dict[str, Reused] | None:
        """What the last extraction of `path` read as `role` with `extraction` gave, by key."""
        found = self.load_entry("reuse", self._reuse_key(extraction, path, role), dict)
        return found if found is not None and all(isinstance(f, Function | Described) for f in found.values()) else None

    def store_reuse(self, extraction: str, path: str, role: str, reused: dict[str, Reused]) -> None:
        self.store_entry("reuse", self._reuse_key(extraction, path, role), reused)

    # -- a target's parsed profile -------------------------------------------

    @staticmethod
    def _profiles_key(target: str, data: bytes) -> str:
        return key_of(("profile", target, data), _code_digest())  # covers profile.py and rules/targets

    def load_profiles(self, target: str, data: bytes) -> tuple[Profile, ...] | None:
        """The units parsed from `data`, the bytes of the target's profile."""
        found = self.load_entry("profiles", self._profiles_key(target, data), tuple)
        return found if found and all(isinstance(p, Profile) for p in found) else None

    def store_profiles(self, target: str, data: bytes, units: tuple[Profile, ...]) -> None:
        self.store_entry("profiles", self._profiles_key(target, data), units)

    # -- a stamp: the content key of a tree known by its stat data -------------

    def load_pointer(self, stamp_key: str) -> str | None:
        """The content key last stored for this stamp key, if it is one."""
        found = self.load_entry("stamps", stamp_key, str)
        return found if found is not None and _is_key(found) else None

    def store_pointer(self, stamp_key: str, key: str) -> None:
        self.store_entry("stamps", stamp_key, key)
