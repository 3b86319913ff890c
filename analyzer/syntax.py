"""tree-sitter plumbing: one C parser, and helpers to read nodes as text."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from functools import cache, lru_cache
from itertools import accumulate, count
from operator import add

import tree_sitter_c
from tree_sitter import Language, Node, Parser, Point, Query, QueryCursor, Range, Tree

from .packages import package_directory


@lru_cache(maxsize=1)
def _language() -> Language:
    return Language(tree_sitter_c.language())


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(_language())


@cache
def query(name: str, **fill: str) -> Query:
    """The query in analyzer/queries/<name>.scm, with @key placeholders filled in."""
    source = (package_directory("analyzer") / "queries" / f"{name}.scm").read_text(encoding="utf-8")
    for key, value in fill.items():
        source = source.replace(f'"@{key}"', '"' + value.replace("\\", "\\\\") + '"')
    return Query(_language(), source)


def captures(query_: Query, node: Node, name: str, spans: Sequence[tuple[int, int]] | None = None) -> list[Node]:
    """The nodes captured as @name, in document order; only in the byte `spans` when given."""
    if spans is None:
        found = QueryCursor(query_).captures(node).get(name, [])
    else:
        found = []
        cursor = QueryCursor(query_)
        for start, end in spans:
            cursor.set_byte_range(start, end)
            found += cursor.captures(node).get(name, [])
    return sorted(found, key=lambda n: n.start_byte)


Spans = Sequence[tuple[int, int]]

# tree-sitter finds the included range of a position by a scan from the first
# one, so that parsing n spans as one tree costs n squared: a file with 20,000
# descriptions took minutes. Runs of this many spans cost what parsing the
# whole file does.
SPANS_PER_TREE = 256


def parse(text: bytes, spans: Spans | None = None) -> Tree:
    """Parse already-masked C source; only the byte `spans` of it when given
    (offsets, lines and columns stay those of the whole text)."""
    if spans is None:
        return _parser().parse(text)
    return _parse_spans(text, spans, _points(text, spans))


def parse_runs(text: bytes, spans: Spans | None) -> list[tuple[Tree, Spans | None]]:
    """`parse` as trees of at most SPANS_PER_TREE spans each, with the spans of
    each; one tree for a whole file."""
    if spans is None or len(spans) <= SPANS_PER_TREE:
        return [(parse(text, spans), spans)]
    points = _points(text, spans)
    runs = [spans[i : i + SPANS_PER_TREE] for i in range(0, len(spans), SPANS_PER_TREE)]
    return [(_parse_spans(text, run, points), run) for run in runs]


def _parse_spans(text: bytes, spans: Spans, points: dict[int, Point]) -> Tree:
    parser = _span_parser()
    parser.included_ranges = [Range(points[a], points[b], a, b) for a, b in spans]
    return parser.parse(text)


@lru_cache(maxsize=1)
def _span_parser() -> Parser:
    return Parser(_language())


def _points(text: bytes, spans: Spans) -> dict[int, Point]:
    """The (line, column) of each end of `spans`, counting each newline of `text`
    once: counting from the start for each of a file's thousands of spans was quadratic."""
    points: dict[int, Point] = {}
    line, counted = 0, 0
    for offset in sorted({offset for span in spans for offset in span}):
        line += text.count(b"\n", counted, offset)
        counted = offset
        points[offset] = Point(line, offset - (text.rfind(b"\n", 0, offset) + 1))
    return points


class Text:
    """Reads node text from the original (unmasked) bytes of a file, and node
    lines and columns from the `parsed` (masked) bytes the tree was made of; without
    them (a file parsed in spans, asked for a few lines) from the nodes."""

    def __init__(self, original: bytes, parsed: bytes | None = None) -> None:
        self.original = original
        # Most files are ASCII: byte offsets are then offsets in one decoded str,
        # which spares a decode per node asked for.
        self._decoded = original.decode("ascii") if original.isascii() else None
        self._parsed = parsed
        self._line_starts: list[int] | None = None

    def raw(self, node: Node) -> str:
        if self._decoded is not None:
            return self._decoded[node.start_byte : node.end_byte]
        return self.original[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def compact(self, node: Node) -> str:
        """Node text with all whitespace and comments removed (`env . msr` -> `env.msr`)."""
        text = self.raw(node)
        if text.isidentifier():
            return text  # most nodes asked for are names: nothing to remove
        return "".join(_strip_comments(text).split())

    def spaced(self, node: Node) -> str:
        """Node text with comments dropped and runs of whitespace folded to one space."""
        text = self.raw(node)
        if text.isidentifier():
            return text
        return " ".join(_strip_comments(text).split())

    # Node.start_point builds a Point in Python code: a search of the line starts
    # of a whole file costs a fraction of it. Rows count newlines, as tree-sitter's do.

    def _starts(self, parsed: bytes) -> list[int]:
        if self._line_starts is None:
            # Line k (from 0) starts past the k newlines and the lengths of the lines before
            # it; built by C iterators, as a Python loop over lines cost more than it saves.
            lengths = accumulate(map(len, parsed.split(b"\n")))
            self._line_starts = [0, *map(add, lengths, count(1))]
        return self._line_starts

    def line(self, node: Node) -> int:
        """The 1-based line of the start of `node`."""
        if self._parsed is None:
            return node.start_point[0] + 1
        return bisect_right(self._starts(self._parsed), node.start_byte)

    def end_line(self, node: Node) -> int:
        if self._parsed is None:
            return node.end_point[0] + 1
        return bisect_right(self._starts(self._parsed), node.end_byte)

    def column(self, node: Node) -> int:
        """The 1-based column, in bytes, of the start of `node`."""
        if self._parsed is None:
            return node.start_point[1] + 1
        offset = node.start_byte
        starts = self._starts(self._parsed)
        return offset - starts[bisect_right(starts, offset) - 1] + 1


def _strip_comments(text: str) -> str:
    if "/*" not in text and "//" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
            out.append(" ")
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def named_children(node: Node) -> list[Node]:
    return [c for c in node.named_children if c.type != "comment"]


def error_nodes(root: Node) -> Iterator[Node]:
    """Yield the outermost ERROR and MISSING nodes under `root`."""
    stack = [root]
    while stack:
        current = stack.pop()
        if current.type == "ERROR" or current.is_missing:
            yield current
            continue
        if current.has_error:
            stack.extend(reversed(current.children))
