"""Read a tree as it is at a git revision, from git's objects only.

Nothing is checked out: the user's working tree and index stay untouched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import InputError


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False, text=True)
    except FileNotFoundError:
        raise InputError("git is not installed; --base needs it (or use --base-tree DIR)") from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"git {args[0]} failed"
        raise InputError(f"{repo}: {reason}")
    return done.stdout


class RevisionReader:
    """Files of `repo` at revision `rev`."""

    def __init__(self, repo: Path, rev: str) -> None:
        if not repo.is_dir():
            raise InputError(f"{repo}: no such directory")
        inside = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True, check=False
        )
        if inside.returncode != 0:
            raise InputError(f"{repo}: not a git repository (use --base-tree DIR to compare unpacked trees)")
        prefix = _git(repo, "rev-parse", "--show-prefix").strip()
        try:
            self.commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
        except InputError:
            raise InputError(f"{repo}: unknown revision {rev!r}") from None
        self.repo = repo
        self.prefix = prefix  # the QEMU tree may be a subdirectory of the repository
        self.label = f"{rev} ({self.commit[:12]})"
        listing = _git(repo, "ls-tree", "--full-tree", "-r", "-d", "--name-only", self.commit, "--", prefix or ".")
        self._directories = {line[len(prefix) :] for line in listing.splitlines() if line.startswith(prefix)}

    def has_directory(self, path: str) -> bool:
        return path in self._directories

    def c_files(self, exclude: tuple[str, ...] = ()) -> list[str]:
        listing = _git(self.repo, "ls-tree", "--full-tree", "-r", "--name-only", self.commit, "--", self.prefix or ".")
        prefix = self.prefix
        paths = (line[len(prefix) :] for line in listing.splitlines() if line.endswith(".c"))
        return sorted(p for p in paths if not p.startswith(exclude))

    def read(self, path: str) -> bytes | None:
        done = subprocess.run(
            ["git", "-C", str(self.repo), "cat-file", "blob", f"{self.commit}:{self.prefix}{path}"],
            capture_output=True,
            check=False,
        )
        return done.stdout if done.returncode == 0 else None
