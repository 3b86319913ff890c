"""The default terminal format: `path:line:col: warning: message [ID]`."""

from __future__ import annotations

from collections import Counter

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
    for report in result.subsections:
        model = report.model_check
        if model is not None:
            d = report.description
            where = f" ({model.location[0]}:{model.location[1]})" if model.location else ""
            lines.append(
                f"{d.path}:{d.line}: note: subsection '{d.name or d.symbol}' is checked by the CPU model, "
                f"not a post_load: {model.function}(){where} refuses to start a destination whose host lacks "
                f"{', '.join(model.features)}, which makes {', '.join(model.guards)} hold"
            )
    diagnostics = result.diagnostics
    for diagnostic in diagnostics:
        lines.append(f"{diagnostic.path}:{diagnostic.line}: note: {diagnostic.message}")
    counts = Counter(report.verdict for report in result.subsections)
    total = len(result.subsections)
    for verdict in VERDICTS:
        lines.append(f"{verdict}: {counts[verdict]} of {total} subsections")
    if len(result.analyses) > 1:
        for analysis, verdicts, findings in result.unit_counts():
            spread = ", ".join(f"{verdicts[v]} {v}" for v in VERDICTS if verdicts[v])
            label = analysis.profile.label
            lines.append(f"  {label}: {sum(verdicts.values())} subsections ({spread or 'none'}), {findings} findings")
    for reason, count in result.hidden:
        lines.append(f"not reported: {count} finding{'s' if count != 1 else ''} {reason}")
    if diagnostics:
        lines.append(f"{len(diagnostics)} notes: regions not understood or files missing")
    return "\n".join(lines) + "\n"
