"""Which findings to report: config acceptances, baselines, and what a change introduced."""

from __future__ import annotations

from collections.abc import Sequence

from .audit import AuditResult
from .config import Config
from .findings import Finding

# The base of a repository's first commit: nothing, so every finding is new.
EMPTY_BASE = "an empty tree (no commit yet)"


def introduced(head: AuditResult, base: Sequence[Finding] | None, base_label: str = EMPTY_BASE) -> AuditResult:
    """Head's findings that are new, or worse than in the `base` findings (None: an
    empty tree): they now depend on a host capability they did not (a finding
    that lost a guard is not reported)."""
    before = {f.fingerprint: set(f.capabilities) for f in base} if base is not None else {}
    kept = tuple(
        f for f in head.findings if f.fingerprint not in before or not set(f.capabilities) <= before[f.fingerprint]
    )
    hidden = [*head.hidden]
    if len(kept) < len(head.findings):
        hidden.append(("already in the base", len(head.findings) - len(kept)))
    return head._replace(findings=kept, hidden=tuple(hidden), base=base_label if base is not None else EMPTY_BASE)


def select(result: AuditResult, config: Config, baseline: dict[str, dict[str, str]] | None = None) -> AuditResult:
    """Drop findings the config accepts and those the baseline records."""
    baseline = baseline or {}
    kept = []
    accepted = baselined = 0
    for finding in result.findings:
        if config.acceptance(finding.rule, finding.subsection) is not None:
            accepted += 1
        elif finding.fingerprint in baseline:
            baselined += 1
        else:
            kept.append(finding)
    hidden = [*result.hidden]
    if accepted:
        hidden.append((f"accepted in {config.source}", accepted))
    if baselined:
        hidden.append(("recorded in the baseline", baselined))
    return result._replace(findings=tuple(kept), hidden=tuple(hidden))
