"""A self-contained HTML audit report: summary, sortable table, evidence chains.

Everything is inline (no network, no fonts): the file can be mailed or
attached to a merge request and opened from file://. Text from the analysed
C source can contain anything, so templates autoescape everywhere and the
Content-Security-Policy allows only this page's own script and style, by
hash: an injected `<script>` or `onerror=` cannot run.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import CLexer

from ..audit import Analysis, AuditResult
from ..findings import Location
from ..patch_site import PatchSite, propose
from ..verdicts import UNCHECKED, VERDICTS, SubsectionReport

_CONTEXT_LINES = 2


@dataclass(frozen=True)
class Excerpt:
    location: Location
    label: str
    html: Markup


@dataclass(frozen=True)
class ChainStep:
    kind: str
    title: str
    detail: str


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("analyzer.reports", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _pygments_css() -> str:
    css: str = HtmlFormatter().get_style_defs(".src")  # type: ignore[no-untyped-call]  # untyped in types-Pygments
    return css


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


class _Sources:
    """Highlighted excerpts from the files the analysis already read."""

    def __init__(self, result: AuditResult) -> None:
        self.lines = {
            f.path: f.data.decode("utf-8", "replace").splitlines() for a in result.analyses for f in a.tree.files
        }
        self.formatter = HtmlFormatter(nowrap=True)
        self.lexer = CLexer(stripnl=False, ensurenl=False)

    def excerpt(self, location: Location, label: str) -> Excerpt | None:
        lines = self.lines.get(location.path)
        if not lines or location.line < 1 or location.line > len(lines):
            return None
        first = max(1, location.line - _CONTEXT_LINES)
        last = min(len(lines), location.line + _CONTEXT_LINES)
        rows = []
        for number in range(first, last + 1):
            code = highlight(lines[number - 1], self.lexer, self.formatter).rstrip("\n")
            rows.append((number, Markup(code), number == location.line))
        html = _environment().get_template("excerpt.html.j2").render(rows=rows)
        return Excerpt(location, label, Markup(html))


def _chain(report: SubsectionReport, patch: PatchSite | None) -> list[ChainStep]:
    d = report.description
    steps = [ChainStep("subsection", d.name or d.symbol, f"{d.symbol} in {d.path}:{d.line}")]
    steps.append(ChainStep("needed", f"needed(): {d.needed or 'none'}", "sent when it returns true"))
    fields = ", ".join(report.fields)
    steps.append(ChainStep("fields", "fields", fields if len(fields) < 80 else fields[:77] + "..."))
    guarded = [c for c in report.consumers if c.capability_guards] or list(report.consumers)
    if guarded:
        h = guarded[0].handoff
        steps.append(ChainStep("consumer", f"{h.function}() {h.path}:{h.line}", f"{guarded[0].field} {h.how}"))
        guards = " && ".join(guarded[0].guards) or "no condition"
        steps.append(ChainStep("guard", "only if", guards if len(guards) < 80 else guards[:77] + "..."))
    else:
        steps.append(ChainStep("consumer", "KVM put path", "no field is handed to KVM"))
    for probe in report.required[:2]:
        steps.append(ChainStep("probe", f"probed: {probe.name}", f"{probe.kind} in {probe.function}()"))
    if report.checking_post_load:
        steps.append(ChainStep("post_load", f"post_load: {report.checking_post_load}", "verifies the capability"))
    elif report.model_check:
        model = report.model_check
        steps.append(
            ChainStep(
                "cpu-model",
                f"CPU model: {model.function}() at realize",
                f"not a post_load; host must offer {', '.join(model.features)}",
            )
        )
    elif patch is not None:
        steps.append(ChainStep("missing", "post_load: no capability check", f"patch site: {patch.post_load}"))
    else:
        steps.append(ChainStep("post_load", f"post_load: {d.post_load or 'none'}", report.verdict))
    for mitigation in report.compat:
        machines = len(mitigation.machines)
        arrays = ", ".join(a.symbol for a in mitigation.arrays) or "no compat table"
        steps.append(
            ChainStep("compat", f"compat: {mitigation.property.name}", f"off in {arrays} ({machines} machine types)")
        )
    return steps


def _proof_steps(result: AuditResult, report: SubsectionReport) -> list[ChainStep]:
    """The "reproduced on KVM" links of `prove`: the run, and the run with the patch applied."""
    run = result.proof_run
    name = report.description.name
    proof = run.proof_of(name) if run and name else None
    if run is None or proof is None or name is None:
        return []
    steps = [ChainStep(f"proof-{proof.result}", f"reproduced on KVM: {proof.result}", proof.reason)]
    patched = run.patched_proof_of(name)
    if patched is not None:
        title = f"with fix's patch: {patched.result}"
        steps.append(ChainStep(f"proof-{patched.result}", title, f"{patched.patch}: {patched.reason}"))
    return steps


def _subsection_view(
    result: AuditResult, analysis: Analysis, report: SubsectionReport, sources: _Sources
) -> dict[str, Any]:
    d = report.description
    patch = propose(analysis, report) if report.verdict == UNCHECKED else None
    excerpts: list[Excerpt | None] = [sources.excerpt(Location(d.path, d.line), "description")]
    if report.needed_at:
        excerpts.append(sources.excerpt(Location(*report.needed_at), f"needed(): {d.needed}"))
    seen: set[tuple[str, int]] = set()
    for consumer in report.consumers:
        h = consumer.handoff
        if (h.path, h.line) in seen:
            continue
        seen.add((h.path, h.line))
        excerpts.append(sources.excerpt(Location(h.path, h.line), f"{consumer.field} {h.how} in {h.function}()"))
    for probe in report.required:
        excerpts.append(sources.excerpt(Location(probe.path, probe.line), f"{probe.name} probed in {probe.function}()"))
    model = report.model_check
    if model is not None and model.location is not None:
        excerpts.append(sources.excerpt(Location(*model.location), model.describe()))
    for mitigation in report.compat:
        for array, line in zip(mitigation.arrays, mitigation.entry_lines, strict=True):
            excerpts.append(
                sources.excerpt(Location(array.path, line), f"{mitigation.property.name} in {array.symbol}")
            )
    flags = sorted({g for c in report.consumers for g in c.capability_guards})
    compat_names = [m.property.name for m in report.compat]
    words = [d.name or "", d.symbol, report.verdict, analysis.profile.label, *flags]
    words += [p.name for p in report.required] + compat_names
    return {
        "report": report,
        "unit": analysis.profile.label,
        "anchor": "sub-" + hashlib.sha256(f"{d.path}:{d.symbol}".encode()).hexdigest()[:12],
        "flags": flags,
        "probe_kinds": sorted({p.kind for p in report.required}),
        "compat_names": compat_names,
        # What the search box matches, in the table and in the evidence alike.
        "search": " ".join(words).lower(),
        "machines": [m.name for mitigation in report.compat for m in mitigation.machines],
        "chain": _chain(report, patch) + _proof_steps(result, report),
        "patch": patch,
        "excerpts": [e for e in excerpts if e is not None],
    }


def render(result: AuditResult, verbose: bool = False) -> str:
    sources = _Sources(result)
    views = [_subsection_view(result, a, r, sources) for a in result.analyses for r in a.subsections]
    verdict_counts = Counter(r.verdict for r in result.subsections)
    unchecked = [r for r in result.subsections if r.verdict == UNCHECKED]
    probe_counts = Counter(kind for r in unchecked for kind in {p.kind for p in r.required})
    mitigated = sum(1 for r in unchecked if any(m.machines for m in r.compat))
    environment = _environment()
    # Our own static text; the CSP allows exactly these bytes by hash.
    style = environment.get_template("report.css").render() + _pygments_css() + "\n"
    script = environment.get_template("report.js").render()
    return environment.get_template("report.html.j2").render(
        result=result,
        tree=result.analysis.tree,
        targets=sorted({a.profile.target for a in result.analyses}),
        units=result.unit_counts(),
        verdicts=VERDICTS,
        verdict_counts=verdict_counts,
        probe_counts=sorted(probe_counts.items()),
        compat_counts={"mitigated": mitigated, "not mitigated": len(unchecked) - mitigated},
        views=views,
        findings=result.findings,
        # A finding links to its subsection's evidence, where the report has one.
        finding_anchors={(v["unit"], v["report"].description.name): v["anchor"] for v in views},
        diagnostics=result.diagnostics if verbose else result.notes,
        hidden_notes=0 if verbose else len(result.diagnostics) - len(result.notes),
        style=Markup(style),
        script=Markup(script),
        style_hash=_csp_hash(style),
        script_hash=_csp_hash(script),
    )
