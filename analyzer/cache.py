"""Facts cached per file by content, outside the analysed tree.

A re-run on an unchanged tree, or the base and head of `check` sharing most
files, then parses only what changed. The key covers the file's path, role
and bytes, the target profile and the analyzer's own code, so a new version
of the tool never reads facts an older one wrote. A cache that cannot be
read or written is simply not used.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path

from .facts.model import FileFacts

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


def _digest_tree(node: object, name: str, digest: hashlib._Hash) -> None:
    path = Path(str(node))
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.suffix in (".py", ".scm", ".toml"):
                _digest_tree(child, f"{name}/{child.name}", digest)
    elif path.is_file():
        digest.update(name.encode() + b"\0" + path.read_bytes())


class FactsCache:
    def __init__(self, directory: Path | None, target: str) -> None:
        self.directory = directory
        self.target = target

    def _entry(self, path: str, role: str, data: bytes) -> Path | None:
        if self.directory is None:
            return None
        key = hashlib.sha256(_code_digest())
        for part in (self.target.encode(), path.encode(), role.encode(), data):
            key.update(len(part).to_bytes(8, "little") + part)
        name = key.hexdigest()
        return self.directory / name[:2] / f"{name}.pickle"

    def load(self, path: str, role: str, data: bytes) -> FileFacts | None:
        entry = self._entry(path, role, data)
        if entry is None or not entry.is_file():
            return None
        try:
            # Only this tool writes here, keyed by content: not untrusted input.
            facts = pickle.loads(entry.read_bytes())
        except Exception:
            return None
        return facts if isinstance(facts, FileFacts) and facts.path == path else None

    def store(self, path: str, role: str, data: bytes, facts: FileFacts) -> None:
        entry = self._entry(path, role, data)
        if entry is None:
            return
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".facts.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(pickle.dumps(facts, protocol=pickle.HIGHEST_PROTOCOL))
            Path(temporary).replace(entry)
        except OSError:
            return
