"""VG002 subsection-always-sent

What it checks
    A VMStateDescription listed in another's `.subsections` that has no
    `.needed` callback.

Why it matters
    The loader (migration/vmstate.c, vmstate_section_needed) sends a
    subsection when its needed() returns true, and always when it has none.
    A destination QEMU that does not know the subsection fails the whole
    migration looking it up (vmstate_subsection_load: "(lookup)", -ENOENT),
    so a subsection without needed() breaks migration to every QEMU older
    than the subsection. That is harmless only when no supported older
    version lacks it, which is why the confidence is medium.

Example
    static const VMStateDescription vmstate_foo_extra = {
        .name = "foo/extra",                /* no .needed */
        .fields = (const VMStateField[]) {
            VMSTATE_UINT32(extra, FooState),
            VMSTATE_END_OF_LIST()
        }
    };

Fix
    Give it a needed() that is false whenever the state has its default
    value, or one tied to a compat property that old machine types switch
    off, so that migration to an older QEMU keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..findings import Finding, Location, Related
from .loader_conventions import listed_subsections
from .meta import RuleInfo

if TYPE_CHECKING:
    from ..audit import Analysis

INFO = RuleInfo(
    id="VG002",
    name="subsection-always-sent",
    severity="warning",
    confidence="medium",
    summary="subsection without needed() is always sent, so migration to an older QEMU fails",
    scope="tree",
)


def check(analysis: Analysis) -> Iterator[Finding]:
    seen: set[tuple[str, str]] = set()
    for parent, subsection in listed_subsections(analysis.inventory):
        key = (subsection.path, subsection.symbol)
        if subsection.needed or key in seen:
            continue
        seen.add(key)
        name = subsection.name or subsection.symbol
        yield INFO.finding(
            subsection=name,
            message=(
                f"subsection '{name}' has no needed(): it is always sent, and a QEMU that does not know it "
                "fails the migration"
            ),
            location=Location(subsection.path, subsection.line, subsection.column),
            related=(
                Related(
                    Location(parent.path, parent.line, parent.column),
                    f"listed in the .subsections of {parent.symbol} ('{parent.name or parent.symbol}')",
                ),
            ),
            key=(subsection.path, name),
        )
