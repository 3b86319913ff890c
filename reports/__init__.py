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
