"""One migration experiment: a source guest, its stream, and the destinations that load it.

The source runs the firmware under KVM until it has written every MSR, then
migrates to a file (`exec:`), so that every destination loads the very same
stream: one on the real host, and one per plan whose KVM hides that plan's
probes. Each destination runs under the interposer, which records what it
hands to KVM; it is done once its incoming migration ends.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import Progress
from .build import QemuBuild
from .firmware import MsrWrite, firmware_image, taken_writes
from .interposer import Hide, KvmLog, interposer_env, read_log
from .plan import Plan
from .qemu import Guest, Guests, QemuError, guests


@dataclass(frozen=True)
class Destination:
    completed: bool  # the incoming migration reported success
    said: str  # what QEMU printed on stderr, as one line
    log: KvmLog


@dataclass(frozen=True)
class Observation:
    """What one experiment saw, for every plan it ran."""

    writes: tuple[MsrWrite, ...]  # what the firmware tried, in order
    taken: tuple[bool, ...]  # which of them the guest CPU took
    stream: dict[str, dict[str, Any]]  # the source's CPU subsections in the stream: name -> fields
    full: Destination  # on the real host
    older: dict[str, Destination]  # by subsection: the destination that hides its plan's probes
    binary: QemuBuild

    def final_value(self, index: int) -> int | None:
        """What MSR `index` holds after the firmware ran: the last write to it that the CPU took."""
        value = None
        for write, taken in zip(self.writes, self.taken, strict=True):
            if write.index == index and taken:
                value = write.value
        return value

    def write_faulted(self, index: int) -> bool:
        return any(w.index == index and not t for w, t in zip(self.writes, self.taken, strict=True))


def firmware_writes(plans: Sequence[Plan]) -> tuple[MsrWrite, ...]:
    """Set-up writes first, then each target's candidates, each MSR once."""
    writes: list[MsrWrite] = []
    seen: set[int] = set()
    for plan in plans:
        for index, value in plan.setup:
            if index not in seen:
                writes.append(MsrWrite(index, value))
                seen.add(index)
    for plan in plans:
        for target in plan.targets:
            if target.index not in seen:
                writes += [MsrWrite(target.index, value) for value in target.candidates]
                seen.add(target.index)
    return tuple(writes)


def run_experiment(
    build: QemuBuild,
    plans: Sequence[Plan],
    interposer: Path,
    scratch: Path,
    cpu: str,
    timeout: float,
    progress: Progress | None = None,
) -> Observation:
    """Source, stream, and the destinations of `plans`; QemuError when the source itself fails."""
    tell = progress or (lambda _message: None)
    writes = firmware_writes(plans)
    firmware = scratch / "firmware.bin"
    firmware.write_bytes(firmware_image(writes))
    stream = scratch / "stream.bin"
    with guests(build.binary, build.source / "pc-bios", scratch) as running:
        tell("source: the guest writes its MSRs, then migrates to a file")
        source = running.start("source", firmware, cpu, timeout=timeout)
        taken: tuple[bool, ...] | None = None

        def firmware_done() -> bool:
            nonlocal taken
            taken = taken_writes(source.serial.read_bytes(), writes)
            return taken is not None

        source.wait_for(firmware_done, "end of the firmware's MSR writes", timeout)
        assert taken is not None
        source.command("stop")
        source.command("migrate", uri=f"exec:cat > {shlex.quote(str(stream))}")
        status = source.migration_status(timeout)
        if status != "completed":
            raise QemuError(f"source: migration to a file {status}: {source.said()}")
        running.stop(source)
        subsections = read_stream(build, stream, timeout)
        tell("destination on the real host")
        full = _destination(running, "full", firmware, cpu, stream, interposer, Hide(), timeout)
        older: dict[str, Destination] = {}
        for number, plan in enumerate(plans, start=1):
            tell(f"older-kernel destination {number}/{len(plans)}: {plan.subsection}, hiding {', '.join(plan.hidden)}")
            name = f"older-{number}"
            older[plan.subsection] = _destination(running, name, firmware, cpu, stream, interposer, plan.hide, timeout)
    return Observation(writes, taken, subsections, full, older, build)


def _destination(
    running: Guests, name: str, firmware: Path, cpu: str, stream: Path, interposer: Path, hide: Hide, timeout: float
) -> Destination:
    log = running.scratch / f"{name}.kvm.log"
    environment = interposer_env(interposer, hide, log)
    guest: Guest = running.start(name, firmware, cpu, ("-incoming", "defer"), environment, timeout)
    try:
        guest.command("migrate-incoming", uri=f"exec:cat {shlex.quote(str(stream))}")
        status = guest.migration_status(timeout)
    except QemuError:
        # A failed incoming migration makes QEMU exit, and QMP may break before it has.
        try:
            guest.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise
        status = "failed"
    running.stop(guest)
    return Destination(status == "completed", guest.said(), read_log(log))


def read_stream(build: QemuBuild, stream: Path, timeout: float) -> dict[str, dict[str, Any]]:
    """The CPU subsections of a migration stream and their fields, by the tree's analyze-migration.py."""
    script = build.source / "scripts" / "analyze-migration.py"
    if not script.is_file():
        raise QemuError(f"{script}: missing; it is needed to read the migration stream")
    done = subprocess.run(
        [sys.executable, str(script), "-f", str(stream)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise QemuError(f"analyze-migration.py could not read the stream: {last}")
    return cpu_subsections(json.loads(done.stdout))


def cpu_subsections(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`cpu/...` subsections of every `cpu (N)` section of analyze-migration.py's state dump."""
    found: dict[str, dict[str, Any]] = {}
    for section, fields in state.items():
        if section.split(" ")[0] != "cpu" or not isinstance(fields, dict):
            continue
        for name, value in fields.items():
            if name.startswith("cpu/") and isinstance(value, dict):
                found.setdefault(name, value)
                # Nested subsections (cpu/kvm_nested_state/vmx) sit inside their parent.
                found.update(cpu_subsections({"cpu (nested)": value}))
    return found
