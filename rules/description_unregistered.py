"""VG006 description-unregistered

What it checks
    A VMStateDescription that no registered section reaches: nothing outside
    description initializers refers to it (a device class's `.vmsd`, a
    `vmstate_register()` call, a CPU class's `legacy_vmsd`, a macro in a
    header), and no reachable description embeds it (`VMSTATE_STRUCT*`) or
    lists it in `.subsections`.

Why it matters
    Migration sends only sections registered with the loader
    (migration/savevm.c, vmstate_register_with_alias_id(), or a device's
    dc->vmsd through qdev) and what their descriptions reach. A description
    written for a device and never registered means that device's state is
    never migrated: the destination runs with its reset state, and migration
    reports success. It is dead code at best.

How references are found
    A scan of every C file and header that may name a description (outside
    comments and strings), so references made through macros count. Static
    descriptions resolve within their file, others across the tree; a global
    defined twice (a stub and the real one) is reached through either.
    Only names containing "vm" are followed (vmstate_*, vmsd, vms_*, *_vmstate,
    QEMU's spellings); a description named otherwise is never reported.

Example
    const VMStateDescription vmstate_foo_dev = {     /* exported, never used */
        .name = "foo-dev",
        .fields = (const VMStateField[]) {
            VMSTATE_UINT32(count, FooDevice),
            VMSTATE_END_OF_LIST()
        }
    };

Fix
    Register it (`dc->vmsd = &vmstate_foo_dev;`, or embed it in the
    subclasses' descriptions with VMSTATE_STRUCT), or delete it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..facts.model import Description
from ..findings import Finding, Location, Related
from .meta import RuleInfo

if TYPE_CHECKING:
    from ..audit import Analysis

INFO = RuleInfo(
    id="VG006",
    name="description-unregistered",
    severity="warning",
    confidence="medium",
    summary="description that no registered section reaches, so its state is never migrated",
    scope="tree",
)

Key = tuple[str, str]  # (path, symbol)


def _key(description: Description) -> Key:
    return (description.path, description.symbol)


class _Reachability:
    """Roots (references outside any description) and edges (references inside one)."""

    def __init__(self, analysis: Analysis) -> None:
        inventory = analysis.inventory
        self.by_key = {_key(d): d for d in inventory}
        self.globals: dict[str, list[Description]] = {}
        for description in inventory:
            if not description.static:
                self.globals.setdefault(description.symbol, []).append(description)
        self.roots: set[Key] = set()
        self.edges: dict[Key, set[Key]] = {}
        self.declarations: dict[str, list[Location]] = {}
        spans: dict[str, list[Description]] = {}
        for description in inventory:
            spans.setdefault(description.path, []).append(description)
        for found in spans.values():
            found.sort(key=lambda d: d.line)
        starts = {path: [d.line for d in found] for path, found in spans.items()}
        # Most of the tree's ~18,000 references name no description (`vms`,
        # `kvm_state`): one set lookup each, rather than a resolution.
        symbols = {d.symbol for d in inventory}
        for path, references in analysis.references:
            for reference in references:
                if reference.name not in symbols:
                    continue
                if reference.kind == "declaration":
                    if (path, reference.name) not in self.by_key:  # not the definition itself
                        self.declarations.setdefault(reference.name, []).append(Location(path, reference.line))
                    continue
                targets = self._resolve(path, reference.name)
                if not targets:
                    continue  # another file's static description: not this one's to reach
                owner = None
                if reference.kind == "use":
                    owner = _enclosing(spans.get(path, []), starts.get(path, []), reference.line)
                for target in targets:
                    if owner is None:
                        self.roots.add(_key(target))
                    elif owner is not target:
                        self.edges.setdefault(_key(owner), set()).add(_key(target))

    def _resolve(self, path: str, name: str) -> list[Description]:
        own = self.by_key.get((path, name))
        if own is not None and own.static:
            return [own]
        return self.globals.get(name, [])

    def reachable(self) -> set[Key]:
        seen: set[Key] = set()
        stack = sorted(self.roots)
        while stack:
            key = stack.pop()
            if key not in seen:
                seen.add(key)
                stack.extend(sorted(self.edges.get(key, ())))
        return seen


def _enclosing(descriptions: list[Description], starts: list[int], line: int) -> Description | None:
    """The description whose initializer spans `line`, among a file's `descriptions`
    sorted by their first line (`starts`): initializers do not overlap, so a
    bisection finds it, where a scan per reference grew with the square of a file's descriptions."""
    index = bisect.bisect_right(starts, line) - 1
    if index >= 0 and line <= descriptions[index].end_line:
        return descriptions[index]
    return None


def check(analysis: Analysis) -> Iterator[Finding]:
    graph = _Reachability(analysis)
    reachable = graph.reachable()
    # Names without "vm" are never scanned for, so we cannot tell.
    unreachable = {k for k in graph.by_key if k not in reachable and "vm" in k[1]}
    carried = {target for key in unreachable for target in graph.edges.get(key, ()) if target in unreachable}
    for key in sorted(unreachable - carried):
        description = graph.by_key[key]
        shown = description.symbol
        if description.name and description.name_is_literal:
            shown += f" ('{description.name}')"
        related = [
            Related(location, f"declared for other files here, yet no file uses {description.symbol}")
            for location in graph.declarations.get(description.symbol, ())
        ]
        for target in _carried_by(key, graph.edges, unreachable):
            inner = graph.by_key[target]
            related.append(
                Related(Location(inner.path, inner.line, inner.column), f"{inner.symbol}, reached only through it")
            )
        yield INFO.finding(
            subsection=description.name if description.name and description.name_is_literal else description.symbol,
            message=(
                f"VMStateDescription {shown} is reachable from no registered section: no device class, "
                "vmstate_register() call or registered description refers to it, so its state is never migrated"
            ),
            location=Location(description.path, description.line, description.column),
            related=related,
            key=(description.path, description.symbol),
        )


def _carried_by(key: Key, edges: dict[Key, set[Key]], unreachable: set[Key]) -> list[Key]:
    """Unreachable descriptions reached from `key`, in order."""
    seen: dict[Key, None] = {}  # ordered, and a lookup per target
    stack = sorted(edges.get(key, ()), reverse=True)
    while stack:
        target = stack.pop()
        if target in unreachable and target not in seen and target != key:
            seen[target] = None
            stack.extend(sorted(edges.get(target, ()), reverse=True))
    return list(seen)
