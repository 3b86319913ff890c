"""qemu-system-x86_64 built from the analysed tree, in a cache outside it.

The tree is copied into the cache (the build never writes into it), with a
minimal configure: KVM only, no TCG, no default features, docs or tools.
The copy keeps a manifest of what it copied, so a later run copies only
files that changed and ninja rebuilds only what they feed; a patch series is
applied to the same copy and built incrementally, and the files it touched
are copied afresh next time. Binaries are copied out of the build directory,
one per patch series, so each run uses exactly the variant it asked for.

Debian's DFSG source packages lack `python/wheels` (meson >= 1.5 then comes
from PyPI into a private venv, Debian's being too old) and the edk2 firmware
blobs, which `pc-bios/meson.build` still lists as `.bz2` inputs: empty
stand-ins are written into the copy, never the tree, and `-bios` is always
our own firmware.
"""

from __future__ import annotations

import bz2
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..cache import user_cache_directory
from ..errors import InputError
from . import Progress

BINARY = "qemu-system-x86_64"
# What a minimal KVM-only build needs from Debian, for the error message and .ci/run.
DEBIAN_PACKAGES = (
    "build-essential",
    "ninja-build",
    "pkg-config",
    "libglib2.0-dev",
    "libpixman-1-dev",
    "libfdt-dev",
    "zlib1g-dev",
    "flex",
    "bison",
)
_PYTHON_PACKAGES = ("meson>=1.5", "pycotap>=1.1")
# Wanted when configure knows them (older releases lack some).
_CONFIGURE_OPTIONS = (
    "--target-list=x86_64-softmmu",
    "--enable-kvm",
    "--disable-tcg",
    "--without-default-features",
    "--disable-docs",
    "--disable-tools",
    "--disable-install-blobs",
    "--disable-download",
)
_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class QemuBuild:
    binary: Path
    source: Path  # the copy it was built from: scripts/analyze-migration.py, pc-bios/
    version: str  # the tree's VERSION
    how: str  # one line for reports: "built from the tree (configure ...)", or "given with --qemu"
    patches: tuple[str, ...] = ()  # the series applied, by file name


def prove_cache_directory() -> Path:
    """Where builds and the interposer go: $VMSTATE_GUARD_PROVE_CACHE, else the user's cache directory."""
    directory = user_cache_directory("prove", "VMSTATE_GUARD_PROVE_CACHE")
    if directory is None:
        raise InputError("no home directory for the build cache: set VMSTATE_GUARD_PROVE_CACHE")
    return directory


def given_binary(binary: Path, tree: Path) -> QemuBuild:
    """A binary the user built: used as it is, with the tree's scripts."""
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise InputError(f"{binary}: not an executable file (--qemu takes a built {BINARY})")
    return QemuBuild(binary.resolve(), tree, _version(tree), f"given with --qemu ({binary})")


def build_qemu(tree: Path, cache: Path, patches: Sequence[Path] = (), progress: Progress | None = None) -> QemuBuild:
    """Build (or reuse) qemu-system-x86_64 from `tree`, with `patches` applied in order."""
    if not (tree / "configure").is_file() or not (tree / "meson.build").is_file():
        raise InputError(f"{tree}: not a QEMU source tree that can be built (no configure or meson.build)")
    tell = progress or (lambda _message: None)
    place = cache / "builds" / hashlib.sha256(str(tree.resolve()).encode()).hexdigest()[:16]
    place.mkdir(parents=True, exist_ok=True)
    with _locked(place / "lock"):
        series = [(patch.name, patch.read_bytes()) for patch in patches]
        variant = "original" if not series else "patched-" + _digest(b"".join(n.encode() + b for n, b in series))
        binary = place / "bin" / variant / BINARY
        source, build, log = place / "src", place / "build", place / "build.log"
        tell(f"copying {tree} into the build cache")
        if _sync(tree, source, place / _MANIFEST):
            shutil.rmtree(place / "bin", ignore_errors=True)  # every variant was built from the old tree
        if binary.is_file():
            return _result(binary, source, tree, series)
        _stand_in_blobs(source)
        if series:
            _apply(series, source, place / _MANIFEST, log)
        python = _build_python(cache / "venv", log, tell)
        if not (build / "build.ninja").is_file():
            tell("configuring QEMU (KVM only, x86_64)")
            shutil.rmtree(build, ignore_errors=True)
            build.mkdir()
            _run([str(source / "configure"), *_configure_options(source, python)], build, log, "configure")
        tell(f"building {BINARY} (log: {log})")
        _ninja(build, log, tell)
        _check_kvm(build / BINARY, log)
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build / BINARY, binary.with_suffix(".new"))
        binary.with_suffix(".new").replace(binary)
        return _result(binary, source, tree, series)


def _result(binary: Path, source: Path, tree: Path, series: list[tuple[str, bytes]]) -> QemuBuild:
    how = "built from the tree: configure " + " ".join(_CONFIGURE_OPTIONS)
    if series:
        how += f", with {len(series)} patch(es) applied"
    return QemuBuild(binary, source, _version(tree), how, tuple(name for name, _ in series))


def _version(tree: Path) -> str:
    try:
        return (tree / "VERSION").read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build of a tree at a time: a second `prove` waits for the first."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tree_files(tree: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file of the tree but .git and build directories inside it."""
    for top, directories, files in os.walk(tree):
        directories[:] = sorted(d for d in directories if d != ".git" and not Path(top, d, "build.ninja").exists())
        for name in sorted(files):
            path = Path(top, name)
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                yield str(path.relative_to(tree)), info


def _sync(tree: Path, copy: Path, manifest_path: Path) -> bool:
    """Make `copy` hold the tree's files; True when the tree changed since the last copy.

    A file is recopied when its size or mtime in the tree changed since it was
    copied, or when a patch touched the copy. Copies get a fresh mtime, so that
    ninja sees them as newer than what was built from the patched version."""
    try:
        manifest: dict[str, list[int] | None] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    if not copy.is_dir():
        manifest = {}
    changed = False
    seen: set[str] = set()
    for relative, info in _tree_files(tree):
        seen.add(relative)
        stamp = [info.st_size, info.st_mtime_ns]
        recorded = manifest.get(relative, "absent")
        if recorded == stamp and (copy / relative).is_file():
            continue
        changed = changed or recorded is not None  # None: a patch touched it, the tree did not change
        target = copy / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree / relative, target)
        shutil.copymode(tree / relative, target)
        manifest[relative] = stamp
    for relative in sorted(set(manifest) - seen):
        (copy / relative).unlink(missing_ok=True)
        del manifest[relative]
        changed = True
    _write_manifest(manifest_path, manifest)
    return changed


def _write_manifest(path: Path, manifest: dict[str, list[int] | None]) -> None:
    path.with_suffix(".new").write_text(json.dumps(manifest, sort_keys=True), encoding="utf-8")
    path.with_suffix(".new").replace(path)


def _stand_in_blobs(source: Path) -> None:
    """Empty `.bz2` files for the edk2 blobs pc-bios/meson.build lists but DFSG trees lack."""
    listing = source / "pc-bios" / "meson.build"
    if not listing.is_file():
        return
    for name in sorted(set(re.findall(r"'(edk2-[\w.-]+\.fd)'", listing.read_text(encoding="utf-8")))):
        blob = source / "pc-bios" / f"{name}.bz2"
        if not blob.exists():
            blob.write_bytes(bz2.compress(b""))


def _apply(series: list[tuple[str, bytes]], source: Path, manifest_path: Path, log: Path) -> None:
    """Apply each patch to the copy with `patch -p1`; the files it touched are marked for recopying."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name, text in series:
        # Marked before patching, so that even a patch that half applies is undone next time.
        for file in re.findall(rb"^\+\+\+ b/(\S+)", text, flags=re.MULTILINE):
            manifest[file.decode()] = None  # recopied by the next _sync
        _write_manifest(manifest_path, manifest)
        with log.open("ab") as handle:
            handle.write(f"\n=== patch -p1 < {name}\n".encode())
            try:
                done = subprocess.run(
                    ["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch"],
                    cwd=source,
                    input=text,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            except OSError as error:
                why = error.strerror or error
                raise InputError(f"patch could not run: {why} (Debian: apt-get install patch)") from None
        if done.returncode != 0:
            raise InputError(f"{name}: does not apply to the tree (see {log})")


def _build_python(venv: Path, log: Path, tell: Progress) -> Path:
    """A private venv with the meson QEMU needs (Debian's is too old), from PyPI."""
    python = venv / "bin" / "python3"
    stamp = venv / "installed.txt"
    wanted = "\n".join(_PYTHON_PACKAGES)
    if python.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
        return python
    tell("installing meson into a private venv")
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(venv)], venv.parent, log, "python -m venv")
    _run([str(python), "-m", "pip", "install", "-q", *_PYTHON_PACKAGES], venv.parent, log, "pip install meson")
    stamp.write_text(wanted, encoding="utf-8")
    return python


def _configure_options(source: Path, python: Path) -> list[str]:
    """The minimal options, those this release's configure knows."""
    known = subprocess.run(
        [str(source / "configure"), "--help"], cwd=source, capture_output=True, text=True, check=False
    ).stdout
    options = [f"--python={python}"]
    if "--meson=" in known:  # before QEMU 8.1 configure took meson's path
        options.append(f"--meson={python.parent / 'meson'}")
    options += [option for option in _CONFIGURE_OPTIONS if _knows(known, option)]
    return options


def _knows(help_text: str, option: str) -> bool:
    """Whether configure's --help lists `option`, as a flag or as a meson feature (`kvm`)."""
    flag = option.split("=")[0]
    if flag in help_text:
        return True
    feature = re.sub(r"^--(enable|disable)-", "", flag)
    return feature != flag and re.search(rf"^\s+{re.escape(feature)}\s", help_text, re.MULTILINE) is not None


def _run(command: list[str], directory: Path, log: Path, what: str) -> None:
    with log.open("ab") as handle:
        handle.write(f"\n=== {' '.join(command)}\n".encode())
        handle.flush()
        try:
            done = subprocess.run(command, cwd=directory, stdout=handle, stderr=subprocess.STDOUT, check=False)
        except OSError as error:
            raise InputError(f"{what} could not run: {error.strerror or error} (log: {log})") from None
    if done.returncode != 0:
        raise InputError(f"{what} failed (exit {done.returncode}); see {log}")


def _check_kvm(binary: Path, log: Path) -> None:
    """A build without KVM would make every experiment fail later, less clearly."""
    accelerators = subprocess.run([str(binary), "-accel", "help"], capture_output=True, text=True, check=False)
    if "kvm" not in accelerators.stdout.split():
        raise InputError(f"{binary} was built without KVM (configure found no KVM support); see {log}")


def _ninja(build: Path, log: Path, tell: Progress) -> None:
    """ninja, with its [n/total] steps passed on as progress."""
    step = re.compile(rb"^\[(\d+)/(\d+)\]")
    with log.open("ab") as handle:
        handle.write(b"\n=== ninja " + BINARY.encode() + b"\n")
        try:
            process = subprocess.Popen(["ninja", BINARY], cwd=build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as error:
            raise InputError(f"ninja could not run: {error.strerror or error}") from None
        assert process.stdout is not None
        try:
            for line in process.stdout:
                handle.write(line)
                matched = step.match(line)
                if matched:
                    tell(f"building {BINARY} [{int(matched[1])}/{int(matched[2])}] (log: {log})")
        except BaseException:  # Ctrl-C, a timeout: ninja must not outlive us
            process.kill()
            process.wait()
            raise
    if process.wait() != 0:
        raise InputError(f"building {BINARY} failed (exit {process.returncode}); see {log}")
