"""Where identifiers that may name a VMStateDescription occur, for the rule that
finds descriptions no registered section reaches (VG006).

A scan of lines, not a parse: headers and files without descriptions are read
for this alone, and a description is as often referenced from a macro
(`VMSTATE_PCI_DEVICE` names vmstate_pci_device in a #define) as from code.
QEMU names its descriptions vmstate_*, vmsd_*, vms_*, *_vmstate: only
identifiers containing "vm" are recorded, which keeps the facts small.

Lines are read with comments and string and character literals removed (their
newlines kept). Few lines of a file mention "vm", so only those, and the lines
that may continue a #define into them, are blanked, each run from the nearest
point known to lie outside every comment and literal, not from the top of the
file: finding every comment of 25 MB of QEMU took most of the time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .model import Reference

# Comments and literals, found in order from a point outside all of them; or a
# newline, which none starts with, so that a search stops at the end of a line.
_NOISE = re.compile(rb'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"' + rb"|'(?:\\.|[^'\\\n])*'|\n", re.S)
_NOISE_START = re.compile(rb"[/\"']")
# "vm", or a "v" that removing a comment or literal may join to an "m" (`v/**/m` reads "vm");
# to the end of its line, so that a line is found once.
_CANDIDATE = re.compile(rb"v[m/\"'][^\n]*")
_IDENTIFIER = re.compile(rb"[A-Za-z_]\w*")
# Every byte but [A-Za-z0-9_] as a space: `split()` then gives the runs `\w+` matches, faster
# than a regex; an identifier as _IDENTIFIER finds them is such a run without leading digits.
_WORD_BYTES = bytes(c if chr(c).isascii() and (chr(c).isalnum() or chr(c) == "_") else 32 for c in range(256))
_DEFINE = re.compile(rb"\s*#\s*define\b")
_DECLARATION = b"VMStateDescription"


def scan_references(source: bytes) -> tuple[Reference, ...]:
    """Every identifier containing "vm" outside comments and strings, with how it is used."""
    if b"vm" not in source:
        return ()
    references: list[Reference] = []
    clear = 0  # outside every comment and literal; nothing after it is blanked yet
    line, counted = 1, 0  # the number of the line at `counted`
    for start, end in _blocks(source):
        line += source.count(b"\n", counted, start)
        counted = start
        text, clear = _blank(source, start, end, clear)
        lines = text.split(b"\n")
        for index, content in enumerate(lines):
            if b"vm" not in content:
                continue
            macro = b"#" in text and _in_macro(lines, index)  # most blocks have no #define to look for
            if not macro and _DECLARATION in content:
                # Named after VMStateDescription: the definition itself, `extern` or a forward declaration.
                after = content.index(_DECLARATION) + len(_DECLARATION)
                for match in _IDENTIFIER.finditer(content):
                    if b"vm" in match[0]:
                        kind = "declaration" if match.start() >= after else "use"
                        references.append(Reference(match[0].decode("ascii"), line + index, kind))
                continue
            kind = "macro" if macro else "use"
            for word in content.translate(_WORD_BYTES).decode("ascii").split():
                if "vm" in word:
                    references.append(Reference(word.lstrip("0123456789"), line + index, kind))
    return tuple(references)


def _blocks(source: bytes) -> Iterator[tuple[int, int]]:
    """[start, end) of runs of whole lines, in order and apart, holding every line that may read
    "vm" once blanked, each with the lines before it that may continue a #define into it."""
    block: tuple[int, int] | None = None
    for match in _CANDIDATE.finditer(source):
        floor = block[1] + 1 if block else 0  # the line after the last block
        start = source.rfind(b"\n", 0, match.start()) + 1
        # A line that ends in a backslash once blanked has one in its bytes (most
        # candidates have none since the last block, which one search tells).
        while start > floor and source.rfind(b"\\", floor, start) >= 0:
            previous = source.rfind(b"\n", 0, start - 1) + 1
            if source.find(b"\\", previous, start) < 0:
                break
            start = previous
        if block and start <= floor:
            block = (block[0], match.end())
        else:
            if block:
                yield block
            block = (start, match.end())
    if block:
        yield block


def _blank(source: bytes, start: int, end: int, clear: int) -> tuple[bytes, int]:
    """source[start:end] with comments and literals replaced by their newlines, and a point
    outside all of them from `end` on; `clear` is such a point, from the span asked before."""
    pieces: list[bytes] = []
    if clear > start:
        # A comment or literal that began in the span asked before covers the start of this one.
        pieces.append(b"\n" * source.count(b"\n", start, min(clear, end)))
        done = resume = clear
    else:
        done, resume = start, _resume(source, start, clear)
        if resume == start and _NOISE_START.search(source, start, end) is None:
            return source[start:end], end  # most lines: nothing to blank
    for match in _NOISE.finditer(source, resume):
        noise_start, noise_end = match.span()
        if noise_start >= end:
            break
        if noise_end <= start or source[noise_start] == ord("\n"):
            continue
        if noise_start > done:
            pieces.append(source[done:noise_start])
        pieces.append(b"\n" * source.count(b"\n", max(noise_start, start), min(noise_end, end)))
        done = noise_end
    if done < end:
        pieces.append(source[done:end])
    return b"".join(pieces), max(done, end)


def _resume(source: bytes, start: int, clear: int) -> int:
    """Where to begin finding the comments and literals of the line at `start`: the nearest
    line start, from `clear` on, that no literal continues into (its newline follows no
    backslash) and no comment spans; else `clear`."""
    line = start
    while line > clear:
        if source.endswith(b"\\\n", 0, line):
            line = source.rfind(b"\n", 0, line - 1) + 1
            continue
        opened = _open_comment(source, clear, line)
        if opened < 0:
            return line
        line = source.rfind(b"\n", 0, opened) + 1  # maybe inside that comment: try its line
    return clear


def _open_comment(source: bytes, clear: int, line: int) -> int:
    """Where a comment that may span the start of `line` opens, or -1 if none can: it would open
    after `clear` and after the last `*/`, else that `*/` closes it. Searching for one byte, "/",
    is many times faster than for two."""
    slash = line
    while (slash := source.rfind(b"/", clear, slash)) >= 0:
        if source[slash + 1] == ord("*"):
            return slash
        if slash > clear and source[slash - 1] == ord("*"):
            # The last `*/`; but in `/*/` the "*" belongs to the opening, not to a close.
            return slash - 2 if slash - 2 >= clear and source[slash - 2] == ord("/") else -1
    return -1


def _in_macro(lines: list[bytes], index: int) -> bool:
    """Whether line `index` belongs to a #define: it starts one, or continues one with backslashes."""
    first = index
    while first > 0 and lines[first - 1].rstrip().endswith(b"\\"):
        first -= 1
    return bool(_DEFINE.match(lines[first]))
