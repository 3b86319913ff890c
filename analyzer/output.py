"""Writing a report or patch to `-o FILE` without breaking what FILE is.

A regular file is replaced atomically (a temporary file beside it, then a
rename), so that a reader never sees half a report, keeping its mode. What
is not a regular file must not be renamed over: as root (as CI runs), a
rename over /dev/null or /dev/full would leave a regular file in /dev. So a
device, FIFO or socket is written directly; the caller's own standard output
or error (`-o /dev/stdout`) is written as such, appending where the shell
appends; and a symbolic link keeps being one, its target replaced.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from .errors import InputError


def write_output(text: str, output: Path) -> None:
    """Write `text` to `output`; InputError, with no temporary file left, when it cannot be."""
    try:
        status: os.stat_result | None = output.stat()  # through symbolic links
    except FileNotFoundError:
        status = None
    except OSError as error:
        raise InputError(f"{output}: cannot write: {error.strerror or error}") from None
    if status is not None and stat.S_ISDIR(status.st_mode):
        raise InputError(f"{output}: is a directory; give a file name")
    try:
        stream = _standard_stream(status)
        if stream is not None:
            stream.write(text)
            stream.flush()
        elif status is not None and not stat.S_ISREG(status.st_mode):
            _write_directly(text, output)
        else:
            # A link to a regular file (or to none yet) stays a link: its target is replaced.
            target = Path(os.path.realpath(output)) if output.is_symlink() else output
            _replace(text, target, status)
    except OSError as error:
        raise InputError(f"{output}: cannot write: {error.strerror or error}") from None


def _standard_stream(status: os.stat_result | None) -> TextIO | None:
    """sys.stdout or sys.stderr when `status` is the file behind one (`-o /dev/stdout`)."""
    if status is None:
        return None
    for stream in (sys.stdout, sys.stderr):
        try:
            if os.path.samestat(status, os.fstat(stream.fileno())):
                return stream
        except (OSError, ValueError, AttributeError):
            continue  # no descriptor (replaced by a test harness, closed)
    return None


def _write_directly(text: str, output: Path) -> None:
    # No O_CREAT: it exists, and is not a file to create. A FIFO waits for its reader.
    descriptor = os.open(output, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def _replace(text: str, output: Path, status: os.stat_result | None) -> None:
    parent = output.parent if str(output.parent) else Path()
    if not parent.is_dir():
        raise InputError(f"{output}: directory {parent} does not exist")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        if status is not None:
            # The file being replaced keeps its mode, and its owner where we may set it.
            with contextlib.suppress(OSError):
                os.chown(temporary, status.st_uid, status.st_gid)
            Path(temporary).chmod(stat.S_IMODE(status.st_mode))
        else:
            # mkstemp creates 0600; a new report gets the permissions any new file would.
            umask = os.umask(0)
            os.umask(umask)
            Path(temporary).chmod(0o666 & ~umask)
        Path(temporary).replace(output)
    except BaseException:
        # A full filesystem, or an interrupt: no `.NAME.XXXX` left beside the output.
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise


def write_stdout(text: str) -> None:
    """Write `text` to standard output and flush it; InputError when that fails
    (a full device, a closed pipe), rather than a crash or an error at exit."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as error:
        # What is still buffered would fail again when Python exits, with a
        # message of its own: the descriptor now leads nowhere.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise InputError(f"standard output: cannot write: {error.strerror or error}") from None


def refuse_inside(output: Path, trees: list[Path]) -> None:
    """InputError when `output` is inside one of `trees`, which are only read;
    not for standard output named as a file (where the shell sends it is its business)."""
    try:
        if _standard_stream(output.stat()) is not None:
            return
    except OSError:
        pass  # not there yet
    for tree in trees:
        if output.resolve().is_relative_to(tree.resolve()):
            raise InputError(
                f"{output}: inside the analysed tree, which vmstate-guard never writes to; choose another -o"
            )
