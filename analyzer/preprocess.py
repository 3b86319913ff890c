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
from bisect import bisect_right
from collections.abc import Callable, Iterator
from itertools import accumulate

from .record import Record

_DIRECTIVE = re.compile(rb"^[ \t]*#[ \t]*(if|ifdef|ifndef|elif|else|endif)\b(.*)$")
# Patterns start with a literal so that the regex engine skips to candidates
# (the leading \b of `\bcase` would make it try every position); the word
# boundary before is checked by _starts_word.
_CASE_RANGE = re.compile(rb"case\b([^:;{}\n]*?)(\.\.\.[^:;{}\n]*?)(?=:)")
# `struct foo` used as a macro argument: `offsetof(struct foo, bar)`.
_STRUCT_ARGUMENTS = (re.compile(rb"struct(?=\s+\w+\s*[,)])"), re.compile(rb"union(?=\s+\w+\s*[,)])"))
# `offsetof(T, a.b[0].c)`: tree-sitter accepts only a plain member name.
_OFFSETOF_DESIGNATOR = re.compile(rb"\boffsetof\s*\([^,()]*,\s*\w+([.\[][^()]*?)(?=\))")
_AUTOFREE = re.compile(rb"\bg_autofree\b")
_AUTOPTR = re.compile(rb"\bg_autoptr\((\w+)\)")
_BLANK_ALL_BUT_NEWLINES = bytes(0x0A if b == 0x0A else 0x20 for b in range(256))
# A directive and its backslash continuations, from the `#` (_directive_lines
# checks that only blanks precede it on its line, as `^[ \t]*` would).
_DIRECTIVE_FROM_HASH = re.compile(rb"#[ \t]*(?:if|ifdef|ifndef|elif|else|endif)\b(?:[^\n]*\\\n)*[^\n]*")
_BRACKET = re.compile(rb"[{}()\[\]]")
_ALL_BUT_BRACKETS = bytes(b for b in range(256) if b not in b"{}()[]")
_COMMENT_OR_STRING = re.compile(rb'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


class ConditionalRegion(Record):
    """Bytes [start, end) are compiled only when `condition` holds."""

    start: int
    end: int
    condition: str


class MaskedSource:
    """A file's bytes as the parser reads them, and the preprocessor conditions
    over them. A plain class, built once per file parsed: a dataclass costs more
    to define than a run spends on all of them."""

    __slots__ = ("_conditions", "regions", "spans", "text", "unbalanced_lines", "unclosed")

    def __init__(
        self,
        text: bytes,
        regions: tuple[ConditionalRegion, ...],
        unbalanced_lines: tuple[int, ...],
        unclosed: tuple[int, int] | None = None,
        spans: tuple[tuple[int, int], ...] | None = None,
    ) -> None:
        self.text = text
        self.regions = regions
        self.unbalanced_lines = unbalanced_lines
        # Brackets still open at the end of a truncated file, closed past its end
        # so that what precedes still parses: (line of the innermost one, count).
        self.unclosed = unclosed
        # The only spans to parse, when mask() was given a spans_of; None: all of it.
        self.spans = spans
        self._conditions: tuple[list[int], list[str | None]] | None = None

    def condition_at(self, offset: int) -> str | None:
        """Return the conjunction of preprocessor conditions covering `offset`."""
        if self._conditions is None:
            self._conditions = self._covering()
        bounds, conditions = self._conditions
        return conditions[bisect_right(bounds, offset)]

    def _covering(self) -> tuple[list[int], list[str | None]]:
        """The offsets where the covering regions change, and the conjunction before
        each and after the last: a file's hundreds of fields and functions each
        ask, and scanning every region for each was most of the asking."""
        bounds = sorted({offset for r in self.regions for offset in (r.start, r.end)})
        starting: dict[int, list[int]] = {}
        for index, region in enumerate(self.regions):
            starting.setdefault(region.start, []).append(index)
        active: dict[int, str] = {}  # index -> condition, in the order of the regions
        conditions: list[str | None] = [None]
        for bound in bounds:
            active = {i: c for i, c in active.items() if self.regions[i].end > bound}
            for index in starting.get(bound, ()):
                if self.regions[index].end > bound:
                    active[index] = self.regions[index].condition
            active = dict(sorted(active.items()))
            conditions.append(" && ".join(active.values()) if active else None)
        return bounds, conditions


def _blank(buf: bytearray, start: int, end: int) -> None:
    buf[start:end] = buf[start:end].translate(_BLANK_ALL_BUT_NEWLINES)


def _directive_lines(code: bytes) -> Iterator[tuple[int, int]]:
    """Spans of the conditional directives, each from its line's start."""
    for match in _DIRECTIVE_FROM_HASH.finditer(code):
        line_start = code.rfind(b"\n", 0, match.start()) + 1
        if not code[line_start : match.start()].strip(b" \t"):
            yield line_start, match.end()


def _starts_word(code: bytes, index: int) -> bool:
    return index == 0 or not (code[index - 1 : index].isalnum() or code[index - 1] == 0x5F)


def _follows_argument_start(code: bytes, index: int) -> bool:
    """Whether only blanks separate `index` from a preceding `(` or `,`."""
    before = code[max(0, index - 64) : index].rstrip()
    return before.endswith((b"(", b","))


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


def mask(text: bytes, spans_of: Callable[[bytes], list[tuple[int, int]]] | None = None) -> MaskedSource:
    """Return `text` with conditionals, case ranges and macro quirks blanked.

    `spans_of`: for a file of which only some spans will be parsed (the
    inventory's description_spans), finds them once conditionals are masked;
    the quirks are then masked in those spans only, and MaskedSource.spans
    lists them.
    """
    buf = bytearray(text)
    # Directives and quirks are searched in the raw text: blanking a match that
    # sits in a comment or a string changes nothing the parser sees as code,
    # and skipping the blanking of every literal halves the cost of masking.
    code = text
    regions: list[ConditionalRegion] = []
    unbalanced: list[int] = []
    # Each open conditional: [branch start, condition of this branch, negations so far, #if 0?]
    stack: list[tuple[int, str, list[str], bool]] = []
    for start, end in _directive_lines(code):
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

    regions.sort(key=lambda r: (r.start, -r.end))
    closers, unclosed = b"", None
    brackets = text.translate(None, _ALL_BUT_BRACKETS)
    if any(brackets.count(o) != brackets.count(c) for o, c in (b"{}", b"()", b"[]")):
        # Only then tell brackets in code from those in comments and strings.
        closers, unclosed = _closers(bytes(buf), _strip_comments_and_strings(text))
    spans = tuple(spans_of(bytes(buf) + closers)) if spans_of else None
    for start, end in spans if spans is not None else [(0, len(code))]:
        _mask_quirks(code, buf, start, end)
    return MaskedSource(bytes(buf) + closers, tuple(regions), tuple(sorted(unbalanced)), unclosed, spans)


def _mask_quirks(code: bytes, buf: bytearray, start: int, end: int) -> None:
    """Blank case ranges and macro quirks in code[start:end]."""
    # Each pattern runs only where its keyword occurs: a substring test is
    # far cheaper than a regex scan of the whole file.
    for m in _CASE_RANGE.finditer(code, start, end) if code.find(b"...", start, end) >= 0 else ():
        if _starts_word(code, m.start()):
            _blank(buf, m.start(2), m.end(2))
    for m in _OFFSETOF_DESIGNATOR.finditer(code, start, end) if code.find(b"offsetof", start, end) >= 0 else ():
        _blank(buf, m.start(1), m.end(1))
    for pattern in _STRUCT_ARGUMENTS:
        for m in pattern.finditer(code, start, end):
            if _follows_argument_start(code, m.start()):
                _blank(buf, m.start(), m.end())
    for m in _AUTOFREE.finditer(code, start, end) if code.find(b"g_autofree", start, end) >= 0 else ():
        _blank(buf, m.start(), m.end())
    for m in _AUTOPTR.finditer(code, start, end) if code.find(b"g_autoptr", start, end) >= 0 else ():
        # `g_autoptr(Error) err` parses as the declaration `Error *err`.
        replacement = m.group(1) + b"*"
        buf[m.start() : m.end()] = replacement.ljust(m.end() - m.start())


_PAIRS = {ord("{"): b"}", ord("("): b")", ord("["): b"]"}


def _closers(masked: bytes, code: bytes) -> tuple[bytes, tuple[int, int] | None]:
    """Closing brackets for those a truncated file leaves open (outside comments and strings).

    Without them tree-sitter folds the whole unfinished declaration, for
    instance `vmstate_x86_cpu` cut inside its .subsections list, into ERROR
    fragments, and every entry before the cut is lost.
    """
    if _all_closed(masked, code):
        return b"", None
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


_BRACKETS_ONLY = bytes(b if b in b"{}()[]" else 0 for b in range(256))
_DEPTH_STEP = [1 if b in b"{([" else -1 for b in range(256)]


def _all_closed(masked: bytes, code: bytes) -> bool:
    """Whether _closers finds no bracket left open, without its loop over every bracket
    (a file whose #if branches or comments unbalance the raw count, as most such files
    are, is whole): the brackets both texts keep, as one AND of their bracket bytes,
    and their depths. The loop's stack, which ignores a closer with nothing open, ends
    at the last depth less the least depth below zero."""
    size = len(code)
    kept = int.from_bytes(masked[:size].translate(_BRACKETS_ONLY)) & int.from_bytes(code.translate(_BRACKETS_ONLY))
    depths = list(accumulate(map(_DEPTH_STEP.__getitem__, kept.to_bytes(size).translate(None, b"\0"))))
    return not depths or depths[-1] == min(0, min(depths))


# `static const VMStateDescription vmstate_foo = {`, from the start of its line.
_DESCRIPTION = re.compile(rb"VMStateDescription\s+(?:\*\s*)?\w+\s*=(?=\s*\{)")
# `static const Property x86_cpu_properties[] = {` and arm's single
# `static Property arm_cpu_reset_cbar_property = DEFINE_PROP_UINT64(...);`.
_PROPERTY = re.compile(rb"Property\s+\w+\s*(?:\[\s*\])?\s*=")
_NOT_IN_A_DECLARATION_PREFIX = re.compile(rb"[;{}]")
_BRACE = re.compile(rb"[{}]")
_OPENING_BRACE = re.compile(rb"\s*\{")


def description_spans(masked: bytes) -> list[tuple[int, int]]:
    """Byte spans of the VMStateDescription definitions in `masked`.

    The whole-tree inventory needs nothing else from ~600 device files, and
    tree-sitter parses just these spans when told to (see syntax.parse).
    Braces are matched in the masked text; a brace inside a string or comment
    of a description would end it early, which then shows as a parse error.
    """
    return _definition_spans(masked, _DESCRIPTION)


def property_spans(masked: bytes) -> list[tuple[int, int]]:
    """Byte spans of the file-scope qdev Property definitions in `masked`: all a
    CPU's cpu.c is read for (its properties, not its hundreds of functions)."""
    return _definition_spans(masked, _PROPERTY)


def _definition_spans(masked: bytes, definition: re.Pattern[bytes]) -> list[tuple[int, int]]:
    """Spans from the line of each file-scope `definition` match (which ends at
    its `=`) to the `;` after its initializer."""
    spans: list[tuple[int, int]] = []
    position = 0
    for start in definition.finditer(masked):
        line_start = masked.rfind(b"\n", 0, start.start()) + 1
        if (
            line_start < position
            or not _starts_word(masked, start.start())
            or _NOT_IN_A_DECLARATION_PREFIX.search(masked, line_start, start.start())
        ):
            continue
        end = _initializer_end(masked, start.end())
        spans.append((line_start, end))
        position = end
    return spans


def _initializer_end(masked: bytes, offset: int) -> int:
    """Past the `;` that ends the initializer starting at `offset`; braces matched."""
    opening = _OPENING_BRACE.match(masked, offset)
    if opening is not None:
        depth = 0
        for brace in _BRACE.finditer(masked, opening.end() - 1):
            depth += 1 if masked[brace.start()] == 0x7B else -1
            if depth == 0:
                offset = brace.end()
                break
        else:
            return len(masked)
    semicolon = masked.find(b";", offset)
    return len(masked) if semicolon < 0 else semicolon + 1
