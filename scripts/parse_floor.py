#!/usr/bin/env python3
"""The floor of a command: start Python, import tree-sitter, and parse bare
what the command parses (benchmark.py measures it as a whole process).

    python scripts/parse_floor.py JOBS.pickle

JOBS.pickle holds a list of (masked bytes, byte spans or None): the spans
are parsed as analyzer.syntax.parse parses them, None means the whole text.
"""

from __future__ import annotations

import pickle
import sys

import tree_sitter_c
from tree_sitter import Language, Parser, Point, Range

ParseJob = tuple[bytes, list[tuple[int, int]] | None]


def _point(text: bytes, offset: int) -> Point:
    return Point(text.count(b"\n", 0, offset), offset - (text.rfind(b"\n", 0, offset) + 1))


def parse_all(jobs: list[ParseJob]) -> None:
    language = Language(tree_sitter_c.language())
    plain, spanned = Parser(language), Parser(language)
    for text, spans in jobs:
        if spans is None:
            plain.parse(text)
        else:
            spanned.included_ranges = [Range(_point(text, a), _point(text, b), a, b) for a, b in spans]
            spanned.parse(text)


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as handle:  # noqa: PTH123 (pathlib is an import this floor does not need)
        parse_all(pickle.load(handle))
