"""What every rule declares about itself, and the one way rules build findings."""

from __future__ import annotations

from collections.abc import Iterable

from ..findings import Finding, Location, Related, fingerprint
from ..record import Record


class RuleInfo(Record):
    id: str  # stable: never renumbered or reused
    name: str  # kebab-case, what users type
    severity: str  # error, warning, note
    confidence: str  # high, medium, low
    summary: str  # one line for --list-rules
    # "unit": run on each target's CPU and device analyses; "tree": once, over
    # every VMStateDescription of the tree.
    scope: str = "unit"

    def finding(
        self,
        subsection: str,
        message: str,
        location: Location,
        related: Iterable[Related],
        key: tuple[str, ...],
        capabilities: Iterable[str] = (),
    ) -> Finding:
        """A finding of this rule; `key` names what it is about, never a line number."""
        return Finding(
            rule=self.id,
            name=self.name,
            severity=self.severity,
            confidence=self.confidence,
            subsection=subsection,
            message=message,
            location=location,
            related=tuple(related),
            fingerprint=fingerprint(self.id, *key),
            capabilities=tuple(capabilities),
        )
