"""The rule registry: `RULES` is the one answer to "which rules exist".

Ids are stable: never renumber or reuse one.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from ..record import Record
from . import (
    description_unregistered,
    msr_capability_mismatch,
    state_not_migrated,
    subsection_always_sent,
    subsection_name_duplicate,
    subsection_name_prefix,
    unchecked_subsection,
)

if TYPE_CHECKING:
    from ..audit import Analysis
    from ..findings import Finding


class _Check(Protocol):
    def __call__(self, analysis: Analysis) -> Iterator[Finding]: ...


class Rule(Record):
    id: str
    name: str
    severity: str
    confidence: str
    summary: str
    scope: str
    module: ModuleType

    @property
    def documentation(self) -> str:
        """The rule module's docstring is its user-facing documentation."""
        return (self.module.__doc__ or "").strip()

    def check(self, analysis: Analysis) -> Iterator[Finding]:
        checker: _Check = self.module.check
        return checker(analysis)


def _rule(module: ModuleType) -> Rule:
    info = module.INFO
    return Rule(info.id, info.name, info.severity, info.confidence, info.summary, info.scope, module)


RULES: tuple[Rule, ...] = (
    _rule(unchecked_subsection),
    _rule(subsection_always_sent),
    _rule(subsection_name_prefix),
    _rule(state_not_migrated),
    _rule(msr_capability_mismatch),
    _rule(description_unregistered),
    _rule(subsection_name_duplicate),
)


def find_rule(key: str) -> Rule | None:
    """Look a rule up by id (VG001) or name (unchecked-capability-subsection)."""
    for rule in RULES:
        if key.upper() == rule.id or key.lower() == rule.name:
            return rule
    return None
