"""The default terminal format: `path:line:col: warning: message [ID]`."""

from __future__ import annotations

from ..audit import AuditResult
from ..verdicts import VERDICTS


def render(result: AuditResult) -> str:
    lines: list[str] = []
    for finding in result.findings:
        loc = finding.location
        lines.append(f"{loc.path}:{loc.line}:{loc.column}: {finding.severity}: {finding.message} [{finding.rule}]")
        for related in finding.related:
            rel = related.location
            lines.append(f"    {rel.path}:{rel.line}: {related.message}")
    for diagnostic in result.analysis.diagnostics:
        lines.append(f"{diagnostic.path}:{diagnostic.line}: note: {diagnostic.message}")
    counts = {verdict: 0 for verdict in VERDICTS}
    for report in result.analysis.subsections:
        counts[report.verdict] += 1
    total = len(result.analysis.subsections)
    for verdict in VERDICTS:
        lines.append(f"{verdict}: {counts[verdict]} of {total} subsections")
    for reason, count in result.hidden:
        lines.append(f"not reported: {count} finding{'s' if count != 1 else ''} {reason}")
    if result.analysis.diagnostics:
        lines.append(f"{len(result.analysis.diagnostics)} notes: regions not understood or files missing")
    return "\n".join(lines) + "\n"
