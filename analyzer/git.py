"""Read a tree as it is at a git revision, from git's objects only.

Nothing is checked out: the user's working tree and index stay untouched.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import weakref
from collections.abc import Iterable
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


class _Listing:
    """The entries of a revision's tree under `prefix`, relative to it: each
    file's blob id, the directories and the submodules. The top level is
    listed first; a top-level directory's entries only when something under
    it is asked for, all that are wanted in one `git ls-tree`: a check reads
    none of tests/ or roms/, which in a tree committed from a release tarball
    are 33,000 of its 40,000 entries.

    With -z: without it git quotes names with non-ASCII bytes, tabs, newlines
    or quotes (`"hw/\\303\\251.c"`), which no suffix test or read then matches.
    Submodules (gitlinks, mode 160000) are neither files nor directories of
    this tree: their commits are not in this repository, and the working
    tree's checkout of them is skipped alike.
    """

    def __init__(self, repo: Path, commit: str, prefix: str) -> None:
        self.repo, self.commit, self.prefix = repo, commit, prefix
        self.blobs: dict[str, str] = {}
        self.directories: set[str] = set()
        self.gitlinks: set[str] = set()
        self._pending: set[str] = set()  # top-level directories not listed yet
        self._add(self._ls_tree([prefix or "."], recursive=False))
        self._pending = {path for path in self.directories if "/" not in path}

    def want(self, paths: Iterable[str]) -> None:
        """List the top-level directories of `paths` (names or prefixes) not listed yet."""
        tops = {path.split("/", 1)[0] for path in paths} & self._pending
        if tops:
            self._pending -= tops
            self._add(self._ls_tree([self.prefix + top for top in sorted(tops)], recursive=True))

    def want_all_but(self, excluded: tuple[str, ...]) -> None:
        """List every top-level directory but those `excluded` (prefixes such as `tests/`)."""
        self.want(top for top in self._pending if not f"{top}/".startswith(excluded))

    def _ls_tree(self, paths: list[str], recursive: bool) -> str:
        options = ["-r", "-t"] if recursive else []
        # Literal: a directory named `:x` is not pathspec magic to git, but a name.
        command = ["git", "--literal-pathspecs", "-C", str(self.repo), "ls-tree", "--full-tree", *options, "-z"]
        command += [self.commit, "--", *paths]
        try:
            done = subprocess.run(command, capture_output=True, check=False)
        except FileNotFoundError:
            raise InputError("git is not installed; --base needs it (or use --base-tree DIR)") from None
        if done.returncode != 0:
            problem = done.stderr.decode("utf-8", "replace").strip()
            raise InputError(f"{self.repo}: git ls-tree failed: {problem}")
        return done.stdout.decode("utf-8", "surrogateescape")

    def _add(self, listed: str) -> None:
        # Records are `MODE TYPE OID\tPATH`, MODE six digits: the loop slices rather than splits.
        prefix, skip = self.prefix, len(self.prefix)
        for record in listed.split("\0"):
            info, _, path = record.partition("\t")
            if prefix:
                if not path.startswith(prefix):
                    continue
                path = path[skip:]
            kind = info[7:11]
            if kind == "blob":
                self.blobs[path] = info[12:]
            elif kind == "tree":
                self.directories.add(path)
            elif info:
                self.gitlinks.add(path)


class RevisionReader:
    """Files of `repo` at revision `rev`."""

    def __init__(self, repo: Path, rev: str) -> None:
        if not repo.is_dir():
            raise InputError(f"{repo}: no such directory")
        # One process for the prefix and the commit (each git process costs some 4 ms);
        # a second one, when that fails, tells which of the two was not there.
        where = ["--is-inside-work-tree", "--show-prefix"]
        found = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", *where, "--verify", "--quiet", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            inside = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "--is-inside-work-tree"], capture_output=True, check=False
            )
            if inside.returncode != 0:
                raise InputError(f"{repo}: not a git repository (use --base-tree DIR to compare unpacked trees)")
            raise InputError(f"{repo}: unknown revision {rev!r}")
        _, prefix, commit = found.stdout.split("\n")[:3]
        self.commit = commit
        self.repo = repo
        self.prefix = prefix  # the QEMU tree may be a subdirectory of the repository
        self.label = f"{rev} ({self.commit[:12]})"
        self.root_id: str | None = os.path.realpath(repo)
        # The commit's root tree id names every byte below it: with the prefix,
        # a content key for the whole revision, known without listing it.
        root_tree = _git(repo, "rev-parse", "--verify", "--quiet", f"{self.commit}^{{tree}}").strip()
        self.content_id: str | None = f"git tree {root_tree} {prefix}"
        self._listed: _Listing | None = None
        self._batch: subprocess.Popen[bytes] | None = None

    def _listing(self, *paths: str) -> _Listing:
        """The revision's entries (blob ids: content keys known without reading a
        file), listed when first asked for, with the top-level directories of `paths`."""
        if self._listed is None:
            self._listed = _Listing(self.repo, self.commit, self.prefix)
        self._listed.want(paths)
        return self._listed

    def has_directory(self, path: str) -> bool:
        # A top-level directory is known from the top level's listing alone.
        return path in (self._listing(path) if "/" in path else self._listing()).directories

    def c_files(self, exclude: tuple[str, ...] = (), suffixes: tuple[str, ...] = (".c",)) -> list[str]:
        listing = self._listing()
        listing.want_all_but(exclude)
        return sorted(p for p in listing.blobs if p.endswith(suffixes) and not p.startswith(exclude))

    def blob_id(self, path: str) -> str | None:
        """The git blob id of `path` (its content key), None when the revision has no such file."""
        return self._listing(path).blobs.get(path)

    def stamps(self, paths: list[str]) -> str | None:
        # Blob ids are content hashes: equal stamps, equal bytes, without reading any.
        blobs = self._listing(*paths).blobs
        digest = hashlib.sha256()
        for path in paths:
            digest.update(f"{path}\0{blobs.get(path, '-')}\n".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    def read(self, path: str) -> bytes | None:
        listing = self._listing(path)
        oid = listing.blobs.get(path)
        if oid is None:
            if path in listing.directories or path in listing.gitlinks:
                raise UnusableFileError("not a regular file")
            return None
        # One `git cat-file --batch` serves every read, asked by blob id (a
        # name could hold a newline): the inventory of a cold run reads some
        # 2,600 files, and a process per file would take seconds.
        if self._batch is None:
            self._batch = subprocess.Popen(
                ["git", "-C", str(self.repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            weakref.finalize(self, _stop, self._batch)
        stdin, stdout = self._batch.stdin, self._batch.stdout
        assert stdin is not None and stdout is not None
        stdin.write(f"{oid}\n".encode())
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise UnusableFileError("cannot be read from git's objects")
        data = stdout.read(int(header[2]))
        stdout.read(1)  # the newline after the object
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
