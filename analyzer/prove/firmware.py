"""A tiny x86 firmware image that puts chosen values into MSRs, then halts.

QEMU maps a `-bios` image at the top of the first megabyte and the vCPU
starts in real mode at F000:FFF0, where CPL is 0 and `wrmsr` works, so no
mode switch is needed. Each write is followed by a marker byte on COM1; a
#GP handler in the interrupt vector table prints a fault marker and skips
the two-byte `wrmsr`, so an MSR the guest CPU refuses costs one write, not
the run. The serial output then says which writes the CPU took.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

IMAGE_SIZE = 64 * 1024  # QEMU wants a BIOS image in whole 64 KiB units
SEGMENT = 0xF000  # the image's last 64 KiB sit at F0000-FFFFF
COM1 = 0x3F8
WROTE = b"w"  # after each wrmsr, faulted or not
FAULTED = b"x"  # from the #GP handler, before the WROTE of that write
DONE = b"."  # every write has been tried; the vCPU halts next
_GP_VECTOR = 13
_STACK_TOP = 0x7000


@dataclass(frozen=True)
class MsrWrite:
    index: int
    value: int


def _out_com1(char: bytes) -> bytes:
    """mov dx, COM1; mov al, char; out dx, al."""
    return b"\xba" + struct.pack("<H", COM1) + b"\xb0" + char + b"\xee"


def _handler() -> bytes:
    """#GP handler: print FAULTED, step over the faulting wrmsr, iret.

    Real-mode exceptions push no error code: the frame is IP, CS, FLAGS."""
    return (
        _out_com1(FAULTED)
        + b"\x55"  # push bp
        + b"\x89\xe5"  # mov bp, sp
        + b"\x83\x46\x02\x02"  # add word [bp+2], 2  (the saved IP, past wrmsr)
        + b"\x5d"  # pop bp
        + b"\xcf"  # iret
    )


def _write(write: MsrWrite) -> bytes:
    """mov ecx, index; mov eax, low; mov edx, high; wrmsr; then the WROTE marker."""
    low, high = write.value & 0xFFFFFFFF, write.value >> 32
    return (
        b"\x66\xb9"
        + struct.pack("<I", write.index)
        + b"\x66\xb8"
        + struct.pack("<I", low)
        + b"\x66\xba"
        + struct.pack("<I", high)
        + b"\x0f\x30"
        + _out_com1(WROTE)
    )


def firmware_image(writes: Sequence[MsrWrite]) -> bytes:
    """The -bios image that performs `writes` in order, reports each on COM1 and halts."""
    for write in writes:
        if not (0 <= write.index < 1 << 32 and 0 <= write.value < 1 << 64):
            raise ValueError(f"MSR write out of range: {write}")
    body = bytearray(
        b"\xfa"  # cli: nothing may wake the vCPU from its final hlt
        + b"\x31\xc0"  # xor ax, ax
        + b"\x8e\xd8"  # mov ds, ax
        + b"\x8e\xd0"  # mov ss, ax
        + b"\xbc"
        + struct.pack("<H", _STACK_TOP)  # mov sp, _STACK_TOP
    )
    # mov word [13*4], handler; mov word [13*4+2], SEGMENT. The handler's
    # offset is patched in once its place is known.
    handler_operand = len(body) + 4
    body += b"\xc7\x06" + struct.pack("<HH", _GP_VECTOR * 4, 0)
    body += b"\xc7\x06" + struct.pack("<HH", _GP_VECTOR * 4 + 2, SEGMENT)
    for write in writes:
        body += _write(write)
    body += _out_com1(DONE)
    body += b"\xf4\xeb\xfd"  # hlt; jmp back to the hlt
    if len(body) + len(_handler()) > IMAGE_SIZE - 16:
        raise ValueError(f"{len(writes)} MSR writes do not fit in the firmware image")
    struct.pack_into("<H", body, handler_operand, len(body))
    body += _handler()
    reset = b"\xea" + struct.pack("<HH", 0, SEGMENT)  # F000:FFF0: jmp far F000:0000
    image = bytearray(IMAGE_SIZE)
    image[: len(body)] = body
    image[IMAGE_SIZE - 16 : IMAGE_SIZE - 16 + len(reset)] = reset
    return bytes(image)


def taken_writes(serial: bytes, writes: Sequence[MsrWrite]) -> tuple[bool, ...] | None:
    """Which of `writes` the guest CPU took, from the serial output; None before DONE."""
    if DONE not in serial:
        return None
    markers = serial[: serial.index(DONE)]
    attempts = markers.split(WROTE)[: len(writes)]
    if len(attempts) != len(writes) or markers.count(WROTE) != len(writes):
        return None
    return tuple(FAULTED not in attempt for attempt in attempts)
