"""Mask the C constructs tree-sitter cannot parse, keeping every byte offset.

tree-sitter does not run the preprocessor. QEMU puts `#ifdef` inside
initializer lists (the `.subsections` array of `vmstate_x86_cpu`), uses GNU
case ranges and passes `struct foo` to macros such as `offsetof` and
`VMSTATE_STRUCT_POINTER`; each of those yields ERROR nodes. Rather than walk
around the errors, we overwrite those few constructs with spaces of the same
length, so that the syntax tree still maps onto the original lines and
columns, and remember which preprocessor condition covers each byte.

Both branches of an `#if`/`#else` stay in the masked text: for a static
analyzer every branch is code that some build compiles. `#if 0` blocks are
blanked because no build compiles them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIRECTIVE = re.compile(rb"^[ \t]*#[ \t]*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")
_CASE_RANGE = re.compile(rb"\bcase\b([^:;{}\n]*?)(\.\.\.[^:;{}\n]*?)(?=:)")
# `struct foo` used as a macro argument: `offsetof(struct foo, bar)`.
_STRUCT_ARGUMENT = re.compile(rb"[(,](\s*)(struct|union)(\s+\w+\s*)(?=[,)])")
# `offsetof(T, a.b[0].c)`: tree-sitter accepts only a plain member name.
_OFFSETOF_DESIGNATOR = re.compile(rb"\boffsetof\s*\([^,()]*,\s*\w+([.\[][^()]*?)(?=\))")
_AUTOFREE = re.compile(rb"\bg_autofree\b")
_AUTOPTR = re.compile(rb"\bg_autoptr\((\w+)\)")
_BLANK_ALL_BUT_NEWLINES = bytes(0x0A if b == 0x0A else 0x20 for b in range(256))
# A directive line and its backslash continuations.
_DIRECTIVE_LINE = re.compile(rb"^[ \t]*#[ \t]*(?:if|ifdef|ifndef|elif|else|endif)\b(?:[^\n]*\\\n)*[^\n]*", re.M)
_BRACKET = re.compile(rb"[{}()\[\]]")
_COMMENT_OR_STRING = re.compile(rb'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


@dataclass(frozen=True)
class ConditionalRegion:
    """Bytes [start, end) are compiled only when `condition` holds."""

    start: int
    end: int
    condition: str


@dataclass(frozen=True)
class MaskedSource:
    text: bytes
    regions: tuple[ConditionalRegion, ...]
    unbalanced_lines: tuple[int, ...]
    # Brackets still open at the end of a truncated file, closed past its end
    # so that what precedes still parses: (line of the innermost one, count).
    unclosed: tuple[int, int] | None = None

    def condition_at(self, offset: int) -> str | None:
        """Return the conjunction of preprocessor conditions covering `offset`."""
        parts = [r.condition for r in self.regions if r.start <= offset < r.end]
        return " && ".join(parts) if parts else None


def _blank(buf: bytearray, start: int, end: int) -> None:
    for i in range(start, end):
        if buf[i] not in b"\n":
            buf[i] = 0x20


def _condition_text(kind: str, rest: bytes) -> str:
    expr = re.sub(rb"/\*.*?\*/|//.*", b"", rest.replace(b"\\\n", b" "))
    words = " ".join(expr.decode("utf-8", "replace").split())
    if kind == "ifdef":
        return words
    if kind == "ifndef":
        return f"!{words}"
    return words


def _negate(condition: str) -> str:
    if re.fullmatch(r"!?[A-Za-z_]\w*", condition):
        return condition[1:] if condition.startswith("!") else f"!{condition}"
    return f"!({condition})"


def _strip_comments_and_strings(text: bytes) -> bytes:
    """Same-length copy of `text` with comments and literals blanked, for regex scans."""

    def blank(match: re.Match[bytes]) -> bytes:
        return match.group(0).translate(_BLANK_ALL_BUT_NEWLINES)

    return _COMMENT_OR_STRING.sub(blank, text)


def mask(text: bytes) -> MaskedSource:
    """Return `text` with conditionals, case ranges and macro quirks blanked."""
    buf = bytearray(text)
    # Directives and quirks are searched in the raw text: blanking a match that
    # sits in a comment or a string changes nothing the parser sees as code,
    # and skipping the blanking of every literal halves the cost of masking.
    code = text
    regions: list[ConditionalRegion] = []
    unbalanced: list[int] = []
    # Each open conditional: [branch start, condition of this branch, negations so far, #if 0?]
    stack: list[tuple[int, str, list[str], bool]] = []
    for line_match in _DIRECTIVE_LINE.finditer(code):
        start, end = line_match.span()
        match = _DIRECTIVE.match(code[start:end])
        if not match:
            continue
        kind = match.group(1).decode()
        _blank(buf, start, end)
        if kind in ("if", "ifdef", "ifndef"):
            condition = _condition_text(kind, match.group(2))
            stack.append((end, condition, [], condition == "0"))
            continue
        if not stack:
            unbalanced.append(code.count(b"\n", 0, start) + 1)
            continue
        branch_start, condition, negations, dead = stack.pop()
        if dead:
            _blank(buf, branch_start, start)
        else:
            regions.append(ConditionalRegion(branch_start, start, " && ".join([*negations, condition])))
        if kind == "endif":
            continue
        negations = [*negations, _negate(condition)]
        if kind == "else":
            # An #else is a branch whose own condition is the negation of all before it.
            last = negations.pop()
            stack.append((end, last, negations, condition == "1"))
        else:
            new_condition = _condition_text("if", match.group(2))
            stack.append((end, new_condition, negations, new_condition == "0"))
    for branch_start, condition, negations, _ in stack:
        unbalanced.append(code.count(b"\n", 0, branch_start) + 1)
        regions.append(ConditionalRegion(branch_start, len(text), " && ".join([*negations, condition])))

    # Each pattern runs only where its keyword occurs: a substring test is
    # far cheaper than a regex scan of the whole file.
    for m in _CASE_RANGE.finditer(code) if b"..." in code else ():
        _blank(buf, m.start(2), m.end(2))
    for m in _OFFSETOF_DESIGNATOR.finditer(code) if b"offsetof" in code else ():
        _blank(buf, m.start(1), m.end(1))
    for m in _STRUCT_ARGUMENT.finditer(code) if b"struct" in code or b"union" in code else ():
        _blank(buf, m.start(2), m.end(2))
    for m in _AUTOFREE.finditer(code) if b"g_autofree" in code else ():
        _blank(buf, m.start(), m.end())
    for m in _AUTOPTR.finditer(code) if b"g_autoptr" in code else ():
        # `g_autoptr(Error) err` parses as the declaration `Error *err`.
        replacement = m.group(1) + b"*"
        buf[m.start() : m.end()] = replacement.ljust(m.end() - m.start())
    regions.sort(key=lambda r: (r.start, -r.end))
    closers, unclosed = b"", None
    if any(text.count(o) != text.count(c) for o, c in (b"{}", b"()", b"[]")):
        # Only then tell brackets in code from those in comments and strings.
        closers, unclosed = _closers(bytes(buf), _strip_comments_and_strings(text))
    return MaskedSource(bytes(buf) + closers, tuple(regions), tuple(sorted(unbalanced)), unclosed)


_PAIRS = {ord("{"): b"}", ord("("): b")", ord("["): b"]"}


def _closers(masked: bytes, code: bytes) -> tuple[bytes, tuple[int, int] | None]:
    """Closing brackets for those a truncated file leaves open (outside comments and strings).

    Without them tree-sitter folds the whole unfinished declaration, for
    instance `vmstate_x86_cpu` cut inside its .subsections list, into ERROR
    fragments, and every entry before the cut is lost.
    """
    stack: list[int] = []
    for bracket in _BRACKET.finditer(code):
        index = bracket.start()
        byte = code[index]
        if masked[index] != byte:
            continue  # rewritten by masking (`g_autoptr(T)`, blanked directives)
        if byte in _PAIRS:
            stack.append(index)
        elif stack:
            stack.pop()
    if not stack:
        return b"", None
    tail = b"".join(_PAIRS[code[i]] for i in reversed(stack)) + b";\n"
    return b"\n" + tail, (code.count(b"\n", 0, stack[-1]) + 1, len(stack))


# `static const VMStateDescription vmstate_foo = {`, from the start of its line.
_DESCRIPTION_START = re.compile(rb"^[^\n;{}]*?\bVMStateDescription\s+(?:\*\s*)?\w+\s*=\s*\{", re.M)
_BRACE = re.compile(rb"[{}]")


def only_descriptions(masked: bytes) -> bytes:
    """`masked` with everything but VMStateDescription definitions blanked.

    The whole-tree inventory needs nothing else from ~600 device files, and
    tree-sitter skims blank text far faster than it parses code. Braces are
    matched in the masked text; a brace inside a string or comment of a
    description would end it early, which then shows as a parse error.
    """
    keep: list[tuple[int, int]] = []
    position = 0
    for start in _DESCRIPTION_START.finditer(masked):
        if start.start() < position:
            continue
        depth = 0
        end = len(masked)
        for brace in _BRACE.finditer(masked, start.end() - 1):
            depth += 1 if masked[brace.start()] == 0x7B else -1
            if depth == 0:
                semicolon = masked.find(b";", brace.end())
                end = len(masked) if semicolon < 0 else semicolon + 1
                break
        keep.append((start.start(), end))
        position = end
    if not keep:
        return masked.translate(_BLANK_ALL_BUT_NEWLINES)
    pieces: list[bytes] = []
    cursor = 0
    for begin, end in keep:
        pieces.append(masked[cursor:begin].translate(_BLANK_ALL_BUT_NEWLINES))
        pieces.append(masked[begin:end])
        cursor = end
    pieces.append(masked[cursor:].translate(_BLANK_ALL_BUT_NEWLINES))
    return b"".join(pieces)
