"""What a file's last extraction gave, taken back when the file is extracted again.

A pre-merge check extracts the one file a change touched; most of that file's
functions and VMState descriptions are as they were, and walking them again is
most of the extraction (target/i386/machine.c: 36 of its 50 ms). The facts of
a function definition, or of a declaration of descriptions, depend on its own
bytes (as read and as masked), where its first line starts (its column), the
preprocessor condition around it and, for a function, the file's declarations
at file scope: with all of these equal, they are the facts it had, moved by
as many lines as the edit moved it. The path, its role and what the extractor
reads of the profile are the memo's own key in the cache (FactsCache.load_reuse).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..record import Record
from .model import Description, Diagnostic, Function, Guard

if TYPE_CHECKING:
    from tree_sitter import Node

    from .code import Variable


class Described(Record):
    """What one declaration gave: its descriptions, and notes on what of them was not understood."""

    line: int  # the declaration's first line
    descriptions: tuple[Description, ...]
    diagnostics: tuple[Diagnostic, ...]


Reused = Function | Described


class Reuse:
    """What the file's last extraction gave (`before`) and this one gives
    (`now`, to store for the next one), by key (node_key, with the kind)."""

    __slots__ = ("before", "now")

    def __init__(self, before: Mapping[str, Reused] | None = None) -> None:
        self.before: Mapping[str, Reused] = before or {}
        self.now: dict[str, Reused] = {}

    def function(self, key: str, line: int) -> Function | None:
        """The function known by `key`, as it is when it starts on `line`; None if unknown."""
        known = self.before.get("function:" + key)
        if not isinstance(known, Function):
            return None
        found = known if known.line == line else moved(known, line - known.line)
        self.now["function:" + key] = found
        return found

    def made_function(self, key: str, function: Function) -> None:
        self.now["function:" + key] = function

    def described(self, key: str, line: int) -> Described | None:
        """What the declaration known by `key` gives when it starts on `line`; None if unknown."""
        known = self.before.get("descriptions:" + key)
        if not isinstance(known, Described):
            return None
        found = known if known.line == line else _described_moved(known, line - known.line)
        self.now["descriptions:" + key] = found
        return found

    def made_described(self, key: str, described: Described) -> None:
        self.now["descriptions:" + key] = described

    @property
    def changed(self) -> bool:
        """Whether `now` is not what the memo holds (something new, moved or gone)."""
        return self.now.keys() != self.before.keys() or any(f is not self.before[k] for k, f in self.now.items())


def scope_digest(file_scope: Mapping[str, Variable]) -> bytes:
    """A digest of a file's declarations at file scope, as functions look names up in them."""
    return hashlib.sha1(repr(sorted(file_scope.items())).encode(), usedforsecurity=False).digest()


def node_key(node: Node, source: bytes, masked: bytes, column: int, condition: str | None, scope: bytes) -> str:
    """What a definition's or declaration's facts depend on, but its line (see the module's docstring)."""
    digest = hashlib.sha1(usedforsecurity=False)
    start, end = node.start_byte, node.end_byte
    for part in (scope, repr((column, condition)).encode(), source[start:end], masked[start:end]):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def moved(function: Function, lines: int) -> Function:
    """`function` as extracted `lines` lines further down the file: every line it records moved."""
    guards: dict[int, Guard] = {}  # shared by the calls and assignments under one `if`: kept shared

    def move(these: tuple[Guard, ...]) -> tuple[Guard, ...]:
        found = []
        for guard in these:
            done = guards.get(id(guard))
            if done is None:
                done = guards[id(guard)] = guard._replace(line=guard.line + lines)
            found.append(done)
        return tuple(found)

    return function._replace(
        line=function.line + lines,
        end_line=function.end_line + lines,
        calls=tuple(c._replace(guards=move(c.guards), line=c.line + lines) for c in function.calls),
        assignments=tuple(a._replace(guards=move(a.guards), line=a.line + lines) for a in function.assignments),
        returns=tuple(r._replace(guards=move(r.guards), line=r.line + lines) for r in function.returns),
    )


def _described_moved(described: Described, lines: int) -> Described:
    """What a declaration gave, as extracted `lines` lines further down the file."""
    return Described(
        described.line + lines,
        tuple(
            d._replace(
                line=d.line + lines,
                end_line=d.end_line + lines,
                fields=tuple(f._replace(line=f.line + lines) for f in d.fields),
                subsections=tuple(s._replace(line=s.line + lines) for s in d.subsections),
            )
            for d in described.descriptions
        ),
        tuple(d._replace(line=d.line + lines) for d in described.diagnostics),
    )
