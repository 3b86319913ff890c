"""The KVM ioctl interposer: built on first use, configured by environment, read back from its log.

kvm_interposer.c (shipped next to this module) is compiled with the
system C compiler into a cache directory and loaded with LD_PRELOAD into
the destination QEMU. It hides the probes of a `Hide` and appends what
QEMU hands to KVM to a log, whose line format the C file documents and
`read_log` parses.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import InputError

_SOURCE = "kvm_interposer.c"
_FLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Werror")
_LIBS = ("-ldl",)


def _compiler() -> list[str]:
    """The C compiler command: $CC (which may carry arguments) or cc."""
    return shlex.split(os.environ.get("CC") or "cc")


def build_interposer(cache_dir: Path) -> Path:
    """Return the interposer's shared object in `cache_dir`, compiling it only when the source or compiler changed."""
    compiler = _compiler()
    if not compiler or shutil.which(compiler[0]) is None:
        raise InputError(
            f"cannot build the KVM ioctl interposer: no C compiler ({' '.join(compiler) or 'cc'!r} not found)"
        )
    try:
        version = subprocess.run(
            [*compiler, "--version"], capture_output=True, check=True, stdin=subprocess.DEVNULL
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise InputError(f"cannot build the KVM ioctl interposer: {compiler[0]} --version failed: {error}") from None
    source = resources.files("analyzer.prove").joinpath(_SOURCE)
    code = source.read_bytes()
    digest = hashlib.sha256()
    for part in (code, version, " ".join((*_FLAGS, *_LIBS)).encode()):
        digest.update(hashlib.sha256(part).digest())
    key = digest.hexdigest()[:16]
    library = cache_dir / f"kvm_interposer-{key}.so"
    if library.is_file():
        return library

    log = cache_dir / f"kvm_interposer-{key}.log"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=cache_dir, prefix=".kvm_interposer-", suffix=".so")
        os.close(descriptor)
    except OSError as error:
        raise InputError(f"{cache_dir}: cannot create the interposer cache: {error.strerror or error}") from None
    scratch = Path(name)
    try:
        with resources.as_file(source) as source_path, log.open("wb") as output:
            command = [*compiler, *_FLAGS, "-o", str(scratch), str(source_path), *_LIBS]
            output.write(shlex.join(command).encode() + b"\n")
            output.flush()
            status = subprocess.run(
                command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False
            ).returncode
        if status != 0:
            raise InputError(f"cannot build the KVM ioctl interposer: {compiler[0]} failed, see {log}")
        # Readers only ever see a complete library: a concurrent build renames the same bytes.
        scratch.chmod(0o755)
        scratch.replace(library)
    except OSError as error:
        raise InputError(f"cannot build the KVM ioctl interposer: {error}; see {log}") from None
    finally:
        scratch.unlink(missing_ok=True)
    return library


@dataclass(frozen=True)
class Hide:
    """The probes the older-kernel destination does not see."""

    msrs: tuple[int, ...] = ()
    caps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for msr in self.msrs:
            if not 0 <= msr <= 0xFFFFFFFF:
                raise ValueError(f"MSR index out of range: {msr:#x}")
        for cap in self.caps:
            if not 0 <= cap <= 0x7FFFFFFF:
                raise ValueError(f"KVM capability number out of range: {cap}")


def interposer_env(library: Path, hide: Hide, log: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to add to a QEMU's environment (`base`, default os.environ) to load the interposer."""
    if any(char in str(library) for char in " :"):
        # The dynamic loader splits LD_PRELOAD on both.
        raise InputError(f"{library}: the interposer's path must not contain a space or ':'")
    existing = (os.environ if base is None else base).get("LD_PRELOAD", "").strip()
    return {
        "LD_PRELOAD": f"{existing}:{library}" if existing else str(library),
        # Set even when empty, so that values inherited from the caller do not leak in.
        "VMSTATE_GUARD_HIDE_MSRS": ",".join(f"{msr:#x}" for msr in hide.msrs),
        "VMSTATE_GUARD_HIDE_CAPS": ",".join(str(cap) for cap in hide.caps),
        "VMSTATE_GUARD_KVM_LOG": str(log),
    }


@dataclass(frozen=True)
class KvmLog:
    """What a QEMU running under the interposer handed to KVM, and which hidden probes it asked.

    `msr_writes`, `payloads` and `tsc_khz` hold what the kernel accepted, in
    log order; `msr_rejected` the KVM_SET_MSRS entries it refused.
    """

    msr_writes: tuple[tuple[int, int], ...] = ()
    hidden_msrs: frozenset[int] = frozenset()
    hidden_caps: frozenset[int] = frozenset()
    payloads: tuple[tuple[int, bytes], ...] = ()
    tsc_khz: tuple[int, ...] = ()
    msr_rejected: tuple[tuple[int, int], ...] = ()
    # Processes that loaded the interposer; empty means LD_PRELOAD never took effect.
    pids: tuple[int, ...] = ()
    config_errors: tuple[str, ...] = ()
    truncated: bool = False

    def msr_values(self, index: int) -> tuple[int, ...]:
        """The values the kernel accepted for MSR `index`, in order."""
        return tuple(data for msr, data in self.msr_writes if msr == index)


def read_log(path: Path) -> KvmLog:
    """Parse an interposer log; a malformed line is an InputError naming it."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InputError(f"{path}: no KVM interposer log (was the interposer loaded?)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the KVM interposer log: {error}") from None
    parser = _LogParser()
    lines = text.split("\n")
    # A process killed mid-write leaves an unterminated last line: not an event.
    for number, line in enumerate(lines[:-1], start=1):
        try:
            parser.line(line)
        except (ValueError, IndexError, KeyError):
            raise InputError(f"{path}:{number}: malformed KVM interposer log line: {line[:80]!r}") from None
    return parser.result()


class _LogParser:
    def __init__(self) -> None:
        self.msr_writes: list[tuple[int, int]] = []
        self.msr_rejected: list[tuple[int, int]] = []
        self.hidden_msrs: set[int] = set()
        self.hidden_caps: set[int] = set()
        self.payloads: list[tuple[int, bytes]] = []
        self.tsc_khz: list[int] = []
        self.pids: list[int] = []
        self.config_errors: list[str] = []
        self.truncated = False
        # KVM_SET_MSRS entries per descriptor, waiting for the call's return.
        self.pending: dict[int, list[tuple[int, int]]] = {}

    def line(self, line: str) -> None:
        kind, *words = line.split(" ")
        fields = dict(word.split("=", 1) for word in words if "=" in word)
        if kind == "start":
            self.pids.append(int(fields["pid"]))
        elif kind == "config-error":
            self.config_errors.append(" ".join(words))
        elif kind == "hide-msr":
            self.hidden_msrs.add(int(words[0], 16))
        elif kind == "hide-cap":
            self.hidden_caps.add(int(words[0]))
        elif kind == "set-msr":
            entry = (int(words[0], 16), int(words[1], 16))
            self.pending.setdefault(int(fields["fd"]), []).append(entry)
        elif kind == "set-msrs-ret":
            entries = self.pending.pop(int(fields["fd"]), [])
            accepted = max(int(words[0]), 0)
            self.msr_writes += entries[:accepted]
            self.msr_rejected += entries[accepted:]
        elif kind == "set":
            if int(fields["ret"]) >= 0:
                payload = bytes.fromhex("".join(word for word in words if "=" not in word))
                if len(payload) != int(fields["size"]):
                    raise ValueError("payload length differs from size")
                self.payloads.append((int(fields["nr"], 16), payload))
        elif kind == "set-tsc-khz":
            if int(fields["ret"]) == 0:
                self.tsc_khz.append(int(words[0]))
        elif kind == "truncated" and not words:
            self.truncated = True
        else:
            raise ValueError(kind)

    def result(self) -> KvmLog:
        # Entries whose call never returned (a killed process, a truncated log) may
        # have reached KVM: count them as written, never as proof of absence.
        for entries in self.pending.values():
            self.msr_writes += entries
        return KvmLog(
            msr_writes=tuple(self.msr_writes),
            hidden_msrs=frozenset(self.hidden_msrs),
            hidden_caps=frozenset(self.hidden_caps),
            payloads=tuple(self.payloads),
            tsc_khz=tuple(self.tsc_khz),
            msr_rejected=tuple(self.msr_rejected),
            pids=tuple(self.pids),
            config_errors=tuple(self.config_errors),
            truncated=self.truncated,
        )
