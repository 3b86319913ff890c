"""vmstate-guard: find QEMU VMState subsections whose state KVM can silently drop."""

__version__ = "0.1.0"
