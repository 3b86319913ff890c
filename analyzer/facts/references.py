"""Where identifiers that may name a VMStateDescription occur, for the rule that
finds descriptions no registered section reaches (VG006).

A scan of lines, not a parse: headers and files without descriptions are read
for this alone, and a description is as often referenced from a macro
(`VMSTATE_PCI_DEVICE` names vmstate_pci_device in a #define) as from code.
QEMU names its descriptions vmstate_*, vmsd_*, vms_*, *_vmstate: only
identifiers containing "vm" are recorded, which keeps the facts small.
"""

from __future__ import annotations

import re

from .model import Reference

# Comments and string literals, replaced by as many newlines so lines keep their numbers.
_NOISE = re.compile(rb'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"' + rb"|'(?:\\.|[^'\\\n])*'", re.S)
_IDENTIFIER = re.compile(rb"[A-Za-z_]\w*")
_DEFINE = re.compile(rb"\s*#\s*define\b")


def _blank(match: re.Match[bytes]) -> bytes:
    return b"\n" * match.group(0).count(b"\n")


def scan_references(source: bytes) -> tuple[Reference, ...]:
    """Every identifier containing "vm" outside comments and strings, with how it is used."""
    if b"vm" not in source:
        return ()
    references: list[Reference] = []
    in_macro = False
    for number, line in enumerate(_NOISE.sub(_blank, source).split(b"\n"), start=1):
        starts_macro = bool(_DEFINE.match(line))
        macro = in_macro or starts_macro
        in_macro = macro and line.rstrip().endswith(b"\\")
        if b"vm" not in line:
            continue
        for match in _IDENTIFIER.finditer(line):
            word = match.group(0)
            if b"vm" not in word:
                continue
            if macro:
                kind = "macro"
            elif b"VMStateDescription" in line[: match.start()]:
                kind = "declaration"  # the definition itself, `extern` or a forward declaration
            else:
                kind = "use"
            references.append(Reference(word.decode("ascii"), number, kind))
    return tuple(references)
