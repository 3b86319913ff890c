"""Functions of a file extracted before, taken back when the file is extracted again.

A pre-merge check extracts the one file a change touched; most of that file's
functions are as they were, and walking them again is most of the extraction
(target/i386/machine.c: 24 of its 50 ms). A function's facts depend on its own
bytes (as read and as masked), where its first line starts (its column), the
preprocessor condition around it and the file's declarations at file scope:
with all of these equal, they are the facts it had, moved by as many lines as
the edit moved it. The path, its role and what the extractor reads of the
profile are the memo's own key in the cache (FactsCache.load_functions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from tree_sitter import Node

from .code import Variable
from .model import Function, Guard


class FunctionReuse:
    """The functions a file's last extraction gave (`before`, by function_key)
    and those this one gives (`now`), to store for the next one."""

    __slots__ = ("before", "now")

    def __init__(self, before: Mapping[str, Function] | None = None) -> None:
        self.before: Mapping[str, Function] = before or {}
        self.now: dict[str, Function] = {}

    def taken(self, key: str, line: int) -> Function | None:
        """The function known by `key`, as it is when it starts on `line`; None if unknown."""
        known = self.before.get(key)
        if known is None:
            return None
        found = known if known.line == line else moved(known, line - known.line)
        self.now[key] = found
        return found

    def made(self, key: str, function: Function) -> None:
        self.now[key] = function

    @property
    def changed(self) -> bool:
        """Whether `now` is not what the memo holds (a function new, moved or gone)."""
        return self.now.keys() != self.before.keys() or any(f is not self.before[k] for k, f in self.now.items())


def scope_digest(file_scope: Mapping[str, Variable]) -> bytes:
    """A digest of a file's declarations at file scope, as functions look names up in them."""
    return hashlib.sha1(repr(sorted(file_scope.items())).encode(), usedforsecurity=False).digest()


def function_key(node: Node, source: bytes, masked: bytes, column: int, condition: str | None, scope: bytes) -> str:
    """What a function definition's facts depend on, but its line (see the module's docstring)."""
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
