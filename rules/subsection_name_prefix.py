"""VG003 subsection-name-prefix

What it checks
    A subsection whose `.name` does not start with its parent's `.name`
    followed by at least one more character (both written as string
    literals; names built from macros are not judged).

Why it matters
    vmstate_subsection_load in migration/vmstate.c stops reading
    subsections at the first one whose name is shorter than the parent's or
    does not start with it ("subsection name has to be section_name/a"),
    leaving it unread in the stream: the subsection can be sent but never
    loaded, and the migration fails or misreads what follows.

Example
    static const VMStateDescription vmstate_foo = {
        .name = "foo",
        .subsections = (const VMStateDescription * const []) {
            &vmstate_bar_extra,             /* .name = "bar/extra" */
            NULL
        }
    };

Fix
    Name the subsection "<parent name>/<what it carries>", as "cpu/msr_smi_count"
    under "cpu".
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
    id="VG003",
    name="subsection-name-prefix",
    severity="error",
    confidence="high",
    summary="subsection name does not start with its parent's name, so the loader never reads it",
    scope="tree",
)


def check(analysis: Analysis) -> Iterator[Finding]:
    seen: set[tuple[str, str, str]] = set()
    for parent, subsection in listed_subsections(analysis.inventory):
        if not (parent.name_is_literal and subsection.name_is_literal and parent.name and subsection.name):
            continue
        if subsection.name.startswith(parent.name) and len(subsection.name) > len(parent.name):
            continue
        key = (subsection.path, subsection.symbol, parent.symbol)
        if key in seen:
            continue
        seen.add(key)
        yield INFO.finding(
            subsection=subsection.name,
            message=(
                f"subsection '{subsection.name}' is not named '{parent.name}...' after its parent "
                f"'{parent.name}': the loader stops at it and never loads it"
            ),
            location=Location(subsection.path, subsection.line, subsection.column),
            related=(
                Related(Location(parent.path, parent.line, parent.column), f"parent {parent.symbol} ('{parent.name}')"),
            ),
            key=(subsection.path, subsection.name, parent.name),
        )
