"""Shared by the rules about conventions QEMU's VMState loader relies on."""

from __future__ import annotations

from collections.abc import Iterator

from ..facts.model import Description, SubsectionEntry


def listed_subsections(inventory: tuple[Description, ...]) -> Iterator[tuple[Description, Description]]:
    """(parent, subsection) for every `.subsections` entry whose description we found."""
    for parent, _, subsection in listed_entries(inventory):
        yield parent, subsection


def listed_entries(
    inventory: tuple[Description, ...],
) -> Iterator[tuple[Description, SubsectionEntry, Description]]:
    """(parent, entry, subsection) for every `.subsections` entry whose description we found.

    Entries resolve within the parent's file first (symbols are file-static and
    18 of them repeat across files), then to a unique description elsewhere.
    """
    by_file: dict[tuple[str, str], Description] = {}
    by_symbol: dict[str, list[Description]] = {}
    for description in inventory:
        by_file.setdefault((description.path, description.symbol), description)
        by_symbol.setdefault(description.symbol, []).append(description)
    for parent in inventory:
        for entry in parent.subsections:
            found = by_file.get((parent.path, entry.symbol))
            if found is None and len(by_symbol.get(entry.symbol, [])) == 1:
                found = by_symbol[entry.symbol][0]
            if found is not None:
                yield parent, entry, found
