"""`vmstate-guard prove`: run the findings as real migrations under KVM.

A QEMU built from the analysed tree migrates a guest that put the
subsection's state into its vCPU to two destinations: one on the real host,
and one whose KVM looks older because an ioctl interposer hides the
finding's probe. What each destination hands to KVM decides the result.
"""

from collections.abc import Callable

# A long step's one-line message (a build's [n/total], a migration), for a terminal.
Progress = Callable[[str], None]
