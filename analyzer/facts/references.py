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
_VM = re.compile(rb"vm")


def _blank(match: re.Match[bytes]) -> bytes:
    return b"\n" * match.group(0).count(b"\n")


def scan_references(source: bytes) -> tuple[Reference, ...]:
    """Every identifier containing "vm" outside comments and strings, with how it is used."""
    if b"vm" not in source:
        return ()
    text = _NOISE.sub(_blank, source)
    lines = text.split(b"\n")
    # Visit only the lines that mention "vm": most of a device file does not.
    candidates: list[int] = []
    line, last = 0, 0
    for match in _VM.finditer(text):
        line += text.count(b"\n", last, match.start())
        last = match.start()
        if not candidates or candidates[-1] != line:
            candidates.append(line)
    references: list[Reference] = []
    for index in candidates:
        content = lines[index]
        macro = _in_macro(lines, index)
        for match in _IDENTIFIER.finditer(content):
            word = match.group(0)
            if b"vm" not in word:
                continue
            if macro:
                kind = "macro"
            elif b"VMStateDescription" in content[: match.start()]:
                kind = "declaration"  # the definition itself, `extern` or a forward declaration
            else:
                kind = "use"
            references.append(Reference(word.decode("ascii"), index + 1, kind))
    return tuple(references)


def _in_macro(lines: list[bytes], index: int) -> bool:
    """Whether line `index` belongs to a #define: it starts one, or continues one with backslashes."""
    first = index
    while first > 0 and lines[first - 1].rstrip().endswith(b"\\"):
        first -= 1
    return bool(_DEFINE.match(lines[first]))
