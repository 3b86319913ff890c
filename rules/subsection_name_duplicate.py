"""VG007 subsection-name-duplicate

What it checks
    Two different descriptions listed in the same `.subsections` array under
    the same `.name` (string literals; entries under preprocessor conditions
    that differ are not compared, as no build may compile both).

Why it matters
    vmstate_subsection_load in migration/vmstate.c finds the description for
    an incoming subsection by name, and vmstate_get_subsection returns the
    first match. The stream of the second one is then read with the first
    one's fields: the migration fails, or loads the wrong state, whenever
    the second one is sent.

Example
    static const VMStateDescription vmstate_tlbemb = {
        .name = "cpu/tlb6xx",           /* QEMU 5.2-7.2: vmstate_tlb6xx's name */
        .needed = tlbemb_needed,
        ...
    };

Fix
    Give the second subsection a name of its own ("cpu/tlbemb"). A stream
    from a release with the old name cannot be read either way; say so in the
    commit message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..findings import Finding, Location, Related
from .loader_conventions import listed_entries
from .meta import RuleInfo

if TYPE_CHECKING:
    from ..audit import Analysis
    from ..facts.model import Description

INFO = RuleInfo(
    id="VG007",
    name="subsection-name-duplicate",
    severity="error",
    confidence="high",
    summary="two subsections of one parent share a name, so the loader reads the second as the first",
    scope="tree",
)


def check(analysis: Analysis) -> Iterator[Finding]:
    # (parent, name) -> the first description listed under it, and its entry's #if
    first: dict[tuple[str, str, str], tuple[Description, str | None]] = {}
    for parent, entry, subsection in listed_entries(analysis.inventory):
        if not (subsection.name_is_literal and subsection.name):
            continue
        key = (parent.path, parent.symbol, subsection.name)
        if key not in first:
            first[key] = (subsection, entry.condition)
            continue
        earlier, condition = first[key]
        if earlier.symbol == subsection.symbol or condition != entry.condition:
            continue
        yield INFO.finding(
            subsection=subsection.name,
            message=(
                f"subsection {subsection.symbol} is named '{subsection.name}' like {earlier.symbol}, listed before "
                f"it in {parent.symbol}: the loader finds {earlier.symbol} by that name and reads "
                f"{subsection.symbol}'s state as its own"
            ),
            location=Location(subsection.path, subsection.line, subsection.column),
            related=(
                Related(Location(earlier.path, earlier.line, earlier.column), f"{earlier.symbol}, found first"),
                Related(Location(parent.path, entry.line), f"listed in {parent.symbol}"),
            ),
            key=(subsection.path, subsection.symbol, subsection.name),
        )
