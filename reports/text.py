"""The default terminal format: `path:line:col: warning: message [ID]`, then a summary
whose last line says what failed."""

from __future__ import annotations

from collections import Counter

from ..audit import AuditResult
from ..findings import Finding
from ..rules.unchecked_subsection import folded_into_findings
from ..verdicts import UNCHECKED, VERDICTS
from . import printable

# Up to this many findings, the last line names each one; above, it counts them per rule.
_NAMED_FINDINGS = 3


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """`1 finding`, `2 findings`, `1,169 descriptions`."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"


def render(result: AuditResult, verbose: bool = False) -> str:
    lines: list[str] = []
    for finding in result.findings:
        loc = finding.location
        lines.append(
            printable(f"{loc.path}:{loc.line}:{loc.column}: {finding.severity}: {finding.message} [{finding.rule}]")
        )
        for related in finding.related:
            rel = related.location
            lines.append("    " + printable(f"{rel.path}:{rel.line}: {related.message}"))
    notes = _notes(result, verbose)
    lines.extend(notes)
    lines.extend(_summary(result))
    hidden = len(result.diagnostics) - len(result.notes) if not verbose else 0
    if notes or hidden:
        shown = f"{plural(len(notes), 'note')}: regions not understood, files missing, CPU-model checks"
        lines.append(shown + (f"; {hidden:,} more on code no analysis uses (--verbose)" if hidden else ""))
    lines.append(_last_line(result, hidden))
    return "\n".join(lines) + "\n"


def _notes(result: AuditResult, verbose: bool) -> list[str]:
    """The note lines: CPU-model checks, then the diagnostics that touch what an analysis uses (all with verbose)."""
    lines: list[str] = []
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
    for diagnostic in result.diagnostics if verbose else result.notes:
        lines.append(f"{diagnostic.path}:{diagnostic.line}: note: {diagnostic.message}")
    return [printable(line) for line in lines]


def _summary(result: AuditResult) -> list[str]:
    lines: list[str] = []
    counts = Counter(report.verdict for report in result.subsections)
    total = len(result.subsections)
    folded = sum(folded_into_findings(analysis) for analysis in result.analyses)
    for verdict in VERDICTS:
        line = f"{verdict}: {counts[verdict]} of {plural(total, 'subsection')}"
        if verdict == UNCHECKED and folded:
            line += f" ({folded} nested in an unchecked one share its VG001 finding)"
        lines.append(line)
    if len(result.analyses) > 1:
        empty: list[str] = []
        for analysis, verdicts, findings in result.unit_counts():
            label = analysis.profile.label
            if not verdicts:
                empty.append(label)
                continue
            spread = ", ".join(f"{verdicts[v]} {v}" for v in VERDICTS if verdicts[v])
            subsections = plural(sum(verdicts.values()), "subsection")
            # In check, verdicts are the head's, findings only the new ones.
            found = plural(findings, "new finding" if result.base is not None else "finding")
            lines.append(f"  {label}: {subsections} ({spread}), {found}")
        if empty:
            lines.append(f"  no subsections: {', '.join(empty)}")
    tree = result.analysis.tree_wide
    lines.append(
        f"tree-wide rules read {plural(tree.description_count, 'description')} in "
        f"{plural(tree.description_files, 'file')} ({tree.files:,} files in all)"
    )
    for reason, count in result.hidden:
        lines.append(f"not reported: {plural(count, 'finding')} {reason}")
    return lines


def _last_line(result: AuditResult, hidden_notes: int) -> str:
    """What failed, in one line: `1 new finding (VG001 cpu/nested_state)`, `no findings`."""
    findings = result.findings
    new = "new " if result.base is not None else ""
    if not findings:
        line = f"no {new}findings"
    elif len(findings) <= _NAMED_FINDINGS:
        named = ", ".join(_name(f) for f in findings)
        line = f"{len(findings)} {new}{'finding' if len(findings) == 1 else 'findings'} ({named})"
    else:
        per_rule = Counter(f.rule for f in findings)
        spread = ", ".join(f"{count} {rule}" for rule, count in sorted(per_rule.items()))
        line = f"{len(findings)} {new}findings ({spread})"
    if hidden_notes:
        line += f", {plural(hidden_notes, 'note')} hidden (--verbose)"
    return printable(line)


def _name(finding: Finding) -> str:
    return f"{finding.rule} {finding.subsection}" if finding.subsection else finding.rule
