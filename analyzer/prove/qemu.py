"""Running qemu-system-x86_64 under KVM and talking QMP to it.

Every process is started in a `Guests` context, which kills what is still
running when the block ends, whether normally, on Ctrl-C or on a timeout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

# Nothing but the vCPU, its firmware and COM1: no NIC, VGA or disks whose
# option ROMs a DFSG build lacks, and no user config that could add them.
_MACHINE = (
    "-machine",
    "pc,accel=kvm",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-m",
    "32",
    # The kvmvapic option ROM only speeds up TPR access for guests that want it; a DFSG build lacks it.
    "-global",
    "apic-common.vapic=off",
)


class QemuError(InputError):
    """A QEMU process failed or did not answer in time; the message says which and what it printed.

    One line and exit 2, as for bad input: what went wrong is outside the tool."""


@dataclass
class Guest:
    name: str
    process: subprocess.Popen[bytes]
    qmp: socket.socket
    stderr: Path
    serial: Path
    _buffer: bytes = b""

    def command(self, execute: str, timeout: float = 30.0, **arguments: Any) -> Any:
        """Send a QMP command and return its `return`; QemuError on an `error` answer."""
        message: dict[str, Any] = {"execute": execute}
        if arguments:
            message["arguments"] = arguments
        self.qmp.sendall(json.dumps(message).encode() + b"\n")
        while True:
            answer = self._receive(timeout)
            if "return" in answer:
                return answer["return"]
            if "error" in answer:
                raise QemuError(f"{self.name}: {execute}: {answer['error'].get('desc', answer['error'])}")

    def _receive(self, timeout: float) -> dict[str, Any]:
        """The next QMP message that is not an event."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                if line.strip():
                    message: dict[str, Any] = json.loads(line)
                    if "event" not in message:
                        return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QemuError(f"{self.name}: QMP gave no answer within {timeout:.0f} s")
            self.qmp.settimeout(remaining)
            try:
                chunk = self.qmp.recv(65536)
            except TimeoutError:
                continue
            except OSError as error:
                raise QemuError(f"{self.name}: QMP connection lost: {error}") from None
            if not chunk:
                raise QemuError(f"{self.name}: QEMU closed QMP; it said: {self.said()}")
            self._buffer += chunk

    def said(self) -> str:
        """What QEMU printed on stderr, as one line."""
        try:
            text = self.stderr.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " / ".join(line.strip() for line in text.splitlines() if line.strip()) or "(nothing)"

    def wait_for(self, predicate: Any, what: str, timeout: float) -> None:
        """Poll `predicate()` until it holds; QemuError if QEMU exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process.poll() is not None:
                raise QemuError(f"{self.name}: QEMU exited ({self.process.returncode}) before {what}: {self.said()}")
            if time.monotonic() > deadline:
                raise QemuError(f"{self.name}: no {what} within {timeout:.0f} s")
            time.sleep(0.02)

    def migration_status(self, timeout: float) -> str:
        """Wait for this QEMU's migration (outgoing or incoming) to end: its final status.

        An incoming migration that fails makes QEMU exit: that is `failed`."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                return "failed"
            try:
                status = str(self.command("query-migrate").get("status", "none"))
            except QemuError:
                if self.process.poll() is not None:
                    return "failed"
                raise
            if status in ("completed", "failed", "cancelled"):
                return status
            if time.monotonic() > deadline:
                raise QemuError(f"{self.name}: migration still {status} after {timeout:.0f} s")
            time.sleep(0.05)


def _connected(qmp: socket.socket, path: Path) -> bool:
    try:
        qmp.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    return True


class Guests:
    """Starts QEMU processes in a scratch directory and ends every one of them."""

    def __init__(self, binary: Path, data_dir: Path, scratch: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.scratch = scratch
        self.started: list[Guest] = []

    def start(
        self,
        name: str,
        firmware: Path,
        cpu: str,
        extra: Sequence[str] = (),
        environment: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Guest:
        qmp_path = self.scratch / f"{name}.qmp"
        stderr = self.scratch / f"{name}.stderr"
        serial = self.scratch / f"{name}.serial"
        command = [
            str(self.binary),
            *_MACHINE,
            "-cpu",
            cpu,
            "-L",
            str(self.data_dir),
            "-bios",
            str(firmware),
            "-serial",
            f"file:{serial}",
            "-qmp",
            f"unix:{qmp_path},server=on,wait=off",
            *extra,
        ]
        with stderr.open("wb") as err:
            try:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    env={**os.environ, **(environment or {})},
                )
            except OSError as error:
                raise InputError(f"{self.binary}: cannot run: {error.strerror or error}") from None
        qmp = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        guest = Guest(name, process, qmp, stderr, serial)
        self.started.append(guest)
        # The socket file appears at bind(), a moment before QEMU listens on it.
        guest.wait_for(lambda: _connected(qmp, qmp_path), "QMP socket", timeout)
        guest._receive(timeout)  # the greeting
        guest.command("qmp_capabilities", timeout)
        return guest

    def stop(self, guest: Guest) -> None:
        """Quit through QMP, then terminate, then kill: the process is gone when this returns."""
        if guest.process.poll() is None:
            with suppress(QemuError, OSError, ValueError):  # it may close QMP before it answers
                guest.command("quit", timeout=5)
        for end in (None, guest.process.terminate, guest.process.kill):
            if end is not None and guest.process.poll() is None:
                end()
            try:
                guest.process.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        guest.qmp.close()

    def close(self) -> None:
        for guest in self.started:
            self.stop(guest)
        self.started.clear()


@contextmanager
def guests(binary: Path, data_dir: Path, scratch: Path) -> Iterator[Guests]:
    running = Guests(binary, data_dir, scratch)
    try:
        yield running
    finally:
        running.close()
