"""Findings: immutable records that rules yield and reports render."""

from __future__ import annotations

import hashlib

from .record import Record


class Location(Record):
    path: str
    line: int
    column: int = 1


class Related(Record):
    """A piece of evidence: the needed() function, the guarded write, the probe."""

    location: Location
    message: str


class Finding(Record):
    rule: str  # stable id, e.g. VG001
    name: str  # kebab-case symbol
    severity: str  # error, warning, note
    confidence: str  # high, medium, low
    subsection: str  # the VMState name, e.g. cpu/msr_smi_count
    message: str
    location: Location
    related: tuple[Related, ...]
    fingerprint: str  # what the finding is about: rule, file, subsection name
    # The host capabilities whose absence drops the state; a change that adds
    # one makes an existing finding worse.
    capabilities: tuple[str, ...] = ()
    # The unit whose analysis found it (`i386`, `arm/gicv3`); "" for rules
    # over the whole tree's descriptions.
    unit: str = ""

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.location.path, self.location.line, self.location.column, self.rule, self.subsection)


def fingerprint(*parts: str) -> str:
    """A stable id built from names only, never line numbers, so baselines survive edits."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def sorted_findings(findings: list[Finding]) -> list[Finding]:
    """The one place findings are ordered."""
    return sorted(findings, key=Finding.sort_key)
