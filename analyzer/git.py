"""Read a tree as it is at a git revision, from git's objects only.

Nothing is checked out: the user's working tree and index stay untouched.
"""

from __future__ import annotations

import subprocess
import weakref
from pathlib import Path

from .errors import InputError
from .tree import UnusableFileError


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False, text=True)
    except FileNotFoundError:
        raise InputError("git is not installed; --base needs it (or use --base-tree DIR)") from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"git {args[0]} failed"
        raise InputError(f"{repo}: {reason}")
    return done.stdout


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    process.wait()


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
        self._batch: subprocess.Popen[bytes] | None = None

    def has_directory(self, path: str) -> bool:
        return path in self._directories

    def c_files(self, exclude: tuple[str, ...] = (), suffixes: tuple[str, ...] = (".c",)) -> list[str]:
        listing = _git(self.repo, "ls-tree", "--full-tree", "-r", "--name-only", self.commit, "--", self.prefix or ".")
        prefix = self.prefix
        paths = (line[len(prefix) :] for line in listing.splitlines() if line.endswith(suffixes))
        return sorted(p for p in paths if not p.startswith(exclude))

    def stamps(self, paths: list[str]) -> str | None:
        return None  # a revision is read through git: its blobs are the key

    def read(self, path: str) -> bytes | None:
        # One `git cat-file --batch` serves every read: the inventory reads
        # some 2,600 files, and a process per file would take seconds.
        if self._batch is None:
            self._batch = subprocess.Popen(
                ["git", "-C", str(self.repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            weakref.finalize(self, _stop, self._batch)
        stdin, stdout = self._batch.stdin, self._batch.stdout
        assert stdin is not None and stdout is not None
        stdin.write(f"{self.commit}:{self.prefix}{path}\n".encode("utf-8", "surrogateescape"))
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3:
            return None  # "<name> missing"
        data = stdout.read(int(header[2]))
        stdout.read(1)  # the newline after the object
        if header[1] != b"blob":
            raise UnusableFileError("not a regular file")
        return data


def is_unborn(repo: Path, rev: str) -> bool:
    """True when `rev` is HEAD of a repository with no commit yet (its first commit is being made)."""
    if rev != "HEAD" or not repo.is_dir():
        return False
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "HEAD"], capture_output=True, check=False
    )
    # symbolic-ref succeeds on an unborn branch; a detached or broken HEAD is not one.
    branch = subprocess.run(["git", "-C", str(repo), "symbolic-ref", "-q", "HEAD"], capture_output=True, check=False)
    return head.returncode != 0 and branch.returncode == 0
