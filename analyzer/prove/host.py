"""What this host's KVM offers, asked directly through /dev/kvm.

A finding can only be reproduced where the host has the capability that an
older kernel lacks: hiding something the host never had proves nothing.
"""

from __future__ import annotations

import fcntl
import os
import platform
import struct
from dataclasses import dataclass

from ..errors import InputError

_KVM_CHECK_EXTENSION = 0xAE03  # _IO(KVMIO, 0x03)
_KVM_GET_MSR_INDEX_LIST = 0xC004AE02  # _IOWR(KVMIO, 0x02, struct kvm_msr_list)
_KVM_GET_MSR_FEATURE_INDEX_LIST = 0xC004AE0A  # _IOWR(KVMIO, 0x0a, struct kvm_msr_list)
_MAX_MSRS = 4096


@dataclass(frozen=True)
class HostKvm:
    machine: str  # platform.machine(): x86_64 here, the only host prove runs on
    msrs: frozenset[int]  # KVM_GET_MSR_INDEX_LIST
    feature_msrs: frozenset[int]  # KVM_GET_MSR_FEATURE_INDEX_LIST
    fd_path: str

    def has_cap(self, number: int) -> bool:
        with _Device(self.fd_path) as kvm:
            return fcntl.ioctl(kvm, _KVM_CHECK_EXTENSION, number) > 0


class _Device:
    """/dev/kvm, opened for one question."""

    def __init__(self, path: str) -> None:
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as error:
            raise InputError(f"{path}: {error.strerror or error}: prove needs a usable KVM") from None

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)


def _msr_list(kvm: int, request: int) -> frozenset[int]:
    buffer = bytearray(struct.pack("<I", _MAX_MSRS) + bytes(4 * _MAX_MSRS))
    try:
        fcntl.ioctl(kvm, request, buffer)
    except OSError:
        return frozenset()
    (count,) = struct.unpack_from("<I", buffer)
    return frozenset(struct.unpack_from(f"<{count}I", buffer, 4))


def host_kvm(path: str = "/dev/kvm") -> HostKvm:
    """The host's KVM, or InputError naming why prove cannot run here."""
    machine = platform.machine()
    if machine not in ("x86_64", "amd64"):
        raise InputError(
            f"prove runs x86 guests under KVM and this host is {machine}: "
            "other targets need a host of their own architecture"
        )
    with _Device(path) as kvm:
        return HostKvm(
            machine,
            _msr_list(kvm, _KVM_GET_MSR_INDEX_LIST),
            _msr_list(kvm, _KVM_GET_MSR_FEATURE_INDEX_LIST),
            path,
        )
