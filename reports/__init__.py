"""Report formats: each module renders results, never re-runs analysis."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..audit import AuditResult

# Formats of `audit` and `check`, by the name users pass to --format.
FINDING_FORMATS = ("text", "json", "sarif", "gitlab", "github", "html")


def renderer(name: str) -> Callable[[AuditResult], str]:
    from . import github, gitlab, html, json_report, sarif, text

    modules = {"text": text, "json": json_report, "sarif": sarif, "gitlab": gitlab, "github": github, "html": html}
    render: Callable[[AuditResult], str] = modules[name].render
    return render


# Formats of `prove`: the audit's, with each subsection's result under KVM.
PROOF_FORMATS = ("text", "json", "sarif", "html")


def proof_renderer(name: str) -> Callable[[AuditResult], str]:
    """Text lists the runs; the other formats are the audit's with the proofs joined in."""
    if name == "text":
        from . import proof_text

        return proof_text.render
    return renderer(name)
