"""Facts cached per file by content, and whole analyses by every byte read,
outside the analysed tree.

A re-run on an unchanged tree loads its analysis in one read; the base and
head of `check`, sharing most files, parse only what changed. The key covers the file's path, role
and bytes, the target profile and the analyzer's own code, so a new version
of the tool never reads facts an older one wrote. A cache that cannot be
read or written is simply not used.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path

from .collector import collector_paused
from .facts.model import FileFacts
from .profile import Profile
from .tree import QemuTree

_FORMAT = b"vmstate-guard facts v1"


def cache_directory() -> Path:
    explicit = os.environ.get("VMSTATE_GUARD_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vmstate-guard" / "facts"


@cache
def _code_digest() -> bytes:
    """A digest of the code and data that decide what facts a file gives."""
    digest = hashlib.sha256(_FORMAT)
    sources = [("analyzer", name) for name in ("preprocess.py", "syntax.py", "profile.py", "facts", "queries")]
    for package, relative in [*sources, ("analyzer.rules", "targets")]:
        _digest_tree(resources.files(package).joinpath(relative), f"{package}/{relative}", digest)
    return digest.digest()


@cache
def _analysis_digest() -> bytes:
    """A digest of all the code and data a whole analysis depends on."""
    digest = hashlib.sha256(_FORMAT + b" analysis")
    _digest_tree(resources.files("analyzer"), "analyzer", digest)
    _digest_tree(resources.files("analyzer.rules").joinpath("targets"), "analyzer.rules/targets", digest)
    return digest.digest()


def _digest_tree(node: object, name: str, digest: hashlib._Hash) -> None:
    path = Path(str(node))
    if path.is_dir():
        for child in sorted(path.iterdir()):
            # Subpackages too: a change in analyzer/facts/ changes every analysis.
            if child.suffix in (".py", ".scm", ".toml", ".json") or (child.is_dir() and child.name != "__pycache__"):
                _digest_tree(child, f"{name}/{child.name}", digest)
    elif path.is_file():
        digest.update(name.encode() + b"\0" + path.read_bytes())


class FactsCache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _entry(self, extraction: str, path: str, role: str, data: bytes) -> Path | None:
        if self.directory is None:
            return None
        key = hashlib.sha256(_code_digest())
        for part in (extraction.encode(), path.encode(), role.encode(), data):
            key.update(len(part).to_bytes(8, "little") + part)
        name = key.hexdigest()
        return self.directory / name[:2] / f"{name}.pickle"

    def analysis_key(
        self,
        settings: str,
        units: list[tuple[Profile, QemuTree]],
        inventory: list[tuple[str, bytes | None, str | None, str]],
    ) -> str | None:
        """What a whole analysis depends on: code, units, settings and every byte read."""
        if self.directory is None:
            return None
        key = hashlib.sha256(_analysis_digest())
        parts = [settings]
        for profile, tree in units:
            parts += [profile.label, tree.label, tree.version or "", *tree.missing]
            parts += [f"{path}:{why}" for path, why in tree.skipped]
            parts += [f"{f.path}:{f.role}:{hashlib.sha256(f.data).hexdigest()}" for f in tree.files]
        parts += [
            f"{path}:{hashlib.sha256(data).hexdigest() if data is not None else why}"
            for path, data, why, _ in inventory
        ]
        for part in parts:
            encoded = part.encode("utf-8", "surrogateescape")
            key.update(len(encoded).to_bytes(8, "little") + encoded)
        return key.hexdigest()

    def stamp_key(self, settings: str, targets: Sequence[str], stamps: str | None) -> str | None:
        """A key for a tree whose files have not changed since a run (Tree.stamps),
        known before reading any of them."""
        if self.directory is None or stamps is None:
            return None
        key = hashlib.sha256(_analysis_digest())
        for part in (settings, ",".join(targets), stamps):
            key.update(len(part).to_bytes(8, "little") + part.encode("utf-8", "surrogateescape"))
        return key.hexdigest()

    def load_stamped(self, stamp_key: str) -> object | None:
        """The analysis last stored for this stamp key, if any."""
        pointer = self._stamp_entry(stamp_key)
        try:
            key = pointer.read_text().strip() if pointer is not None and pointer.is_file() else ""
        except OSError:
            return None
        return self.load_analysis(key) if key else None

    def store_stamped(self, stamp_key: str, key: str) -> None:
        pointer = self._stamp_entry(stamp_key)
        if pointer is not None:
            self._write(pointer, key.encode())

    def _stamp_entry(self, stamp_key: str) -> Path | None:
        return None if self.directory is None else self.directory / "analyses" / "stamps" / stamp_key

    def load_analysis(self, key: str) -> object | None:
        entry = self._analysis_entry(key)
        try:
            # Only this tool writes here, keyed by content: not untrusted input.
            if entry is None or not entry.is_file():
                return None
            data = entry.read_bytes()
            with collector_paused():
                analysis: object = pickle.loads(data)
            return analysis
        except Exception:
            return None

    def store_analysis(self, key: str, analysis: object) -> None:
        entry = self._analysis_entry(key)
        if entry is not None:
            self._write(entry, pickle.dumps(analysis, protocol=pickle.HIGHEST_PROTOCOL))

    def _analysis_entry(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / "analyses" / f"{key}.pickle"

    def load(self, extraction: str, path: str, role: str, data: bytes) -> FileFacts | None:
        """The facts of `path` as extracted with `extraction` (what of a profile the
        extractor reads, Profile.extraction_key; "" for the inventory)."""
        entry = self._entry(extraction, path, role, data)
        if entry is None or not entry.is_file():
            return None
        try:
            # Only this tool writes here, keyed by content: not untrusted input.
            facts = pickle.loads(entry.read_bytes())
        except Exception:
            return None
        return facts if isinstance(facts, FileFacts) and facts.path == path else None

    def store(self, extraction: str, path: str, role: str, data: bytes, facts: FileFacts) -> None:
        entry = self._entry(extraction, path, role, data)
        if entry is not None:
            self._write(entry, pickle.dumps(facts, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def _write(entry: Path, data: bytes) -> None:
        """Write atomically; a cache that cannot be written is simply not used."""
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".entry.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(temporary).replace(entry)
        except OSError:
            return
