"""GitHub Actions workflow commands: one annotation per finding, shown on the diff."""

from __future__ import annotations

from ..audit import AuditResult
from . import printable

_COMMAND = {"error": "error", "warning": "warning", "note": "notice"}


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def render(result: AuditResult) -> str:
    lines = []
    for finding in result.findings:
        loc = finding.location
        # Names from the tree are escaped first: the runner's log shows escape
        # sequences raw, and the newlines kept are only those between evidence lines.
        evidence = "\n".join(printable(f"{r.location.path}:{r.location.line}: {r.message}") for r in finding.related)
        message = printable(finding.message) + (f"\n{evidence}" if evidence else "")
        properties = ",".join(
            [
                f"file={_property(printable(loc.path))}",
                f"line={loc.line}",
                f"col={loc.column}",
                f"title={_property(f'{finding.rule} {finding.name}')}",
            ]
        )
        lines.append(f"::{_COMMAND[finding.severity]} {properties}::{_data(message)}")
    return "\n".join(lines) + ("\n" if lines else "")
