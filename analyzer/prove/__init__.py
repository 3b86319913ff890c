"""`vmstate-guard prove`: run the findings as real migrations under KVM.

A QEMU built from the analysed tree migrates a guest that put the
subsection's state into its vCPU to two destinations: one on the real host,
and one whose KVM looks older because an ioctl interposer hides the
finding's probe. What each destination hands to KVM decides the result.
"""

from collections.abc import Callable

# A long step's one-line message (a build's [n/total], a migration), for a terminal.
Progress = Callable[[str], None]

# `-cpu host` gives the guest every feature the host's KVM offers. Some nested
# hosts list MSR_IA32_ARCH_CAPABILITIES as a feature MSR yet refuse QEMU's own
# write of it at start; no subsection depends on it. Here rather than in
# qemu.py: `prove --help` names it, and building the command line must not
# import prove's machinery (sockets, subprocesses) into every command.
DEFAULT_CPU = "host,-arch-capabilities"
