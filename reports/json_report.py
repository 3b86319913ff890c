"""The audit document: stable, documented by analyzer/schema/audit.schema.json."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..audit import AuditResult
from ..capabilities import Probe
from ..findings import Location
from ..verdicts import VERDICTS, SubsectionReport
from .json_text import dumps

if TYPE_CHECKING:  # prove's machinery is not for the audit's reports to import
    from ..prove.results import Proof

# 2: one entry per unit (target CPU or KVM-backed device) under "units".
# 3: consumers name their probes, guards their whole member chain; what the
#    tree-wide rules read (tree.inventory); which diagnostics touch an analysis.
SCHEMA_VERSION = 3


def _location(location: Location) -> dict[str, Any]:
    return {"file": location.path, "line": location.line, "column": location.column}


def _probe(probe: Probe) -> dict[str, Any]:
    return {"name": probe.name, "kind": probe.kind, "file": probe.path, "line": probe.line, "function": probe.function}


def document(result: AuditResult) -> dict[str, Any]:
    subsections: list[dict[str, Any]] = []
    for analysis in result.analyses:
        subsections.extend(
            {**_subsection(analysis.profile.label, report), **proof_entry(result, report.description.name)}
            for report in analysis.subsections
        )
    findings = [
        {
            "rule": f.rule,
            "name": f.name,
            "severity": f.severity,
            "confidence": f.confidence,
            "unit": f.unit,
            "subsection": f.subsection,
            "message": f.message,
            "location": _location(f.location),
            "related": [{"location": _location(r.location), "message": r.message} for r in f.related],
            "fingerprint": f.fingerprint,
            **proof_entry(result, f.subsection if f.rule == "VG001" else None),
        }
        for f in result.findings
    ]
    units = [
        {
            "unit": analysis.profile.label,
            "target": analysis.profile.target,
            "kvm_file": analysis.tree.kvm_layout,
            "files": sorted(f.path for f in analysis.tree.files),
            "verdicts": {verdict: verdicts[verdict] for verdict in VERDICTS},
            "findings": finding_count,
        }
        for analysis, verdicts, finding_count in result.unit_counts()
    ]
    notes = set(result.notes)
    tree = result.analysis.tree_wide
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "vmstate-guard", "version": result.tool_version},
        "tree": {
            "qemu_version": result.analysis.tree.version,
            "targets": sorted({analysis.profile.target for analysis in result.analyses}),
            "inventory": {
                "descriptions": tree.description_count,
                "description_files": tree.description_files,
                "files": tree.files,
            },
        },
        "units": units,
        "subsections": subsections,
        "findings": findings,
        "diagnostics": [
            {"file": d.path, "line": d.line, "message": d.message, "touches_analysis": d in notes}
            for d in result.diagnostics
        ],
        **_proof_run(result),
    }


def _proof_run(result: AuditResult) -> dict[str, Any]:
    """How `prove` ran, when it did: {"proof_run": {...}}."""
    run = result.proof_run
    if run is None:
        return {}
    return {"proof_run": {"qemu": {"version": run.qemu_version, "built": run.built}, "host": run.host, "cpu": run.cpu}}


def proof_object(proof: Proof) -> dict[str, Any]:
    """One subsection's result under KVM, with the values written and seen."""
    return {
        "result": proof.result,
        "reason": proof.reason,
        "hidden": list(proof.hidden),
        "in_stream": proof.in_stream,
        "msrs": [
            {
                "name": m.name,
                "index": f"{m.index:#x}",
                "written": None if m.written is None else f"{m.written:#x}",
                "seen_full": [f"{v:#x}" for v in m.full],
                "seen_older": [f"{v:#x}" for v in m.older],
            }
            for m in proof.msrs
        ],
        "older_said": proof.older_said,
        **({"patch": proof.patch} if proof.patch else {}),
    }


def proof_entry(result: AuditResult, subsection: str | None) -> dict[str, Any]:
    """{"proof": {...}} for a subsection `prove` ran, with "patched" when a patch was run too."""
    run = result.proof_run
    proof = run.proof_of(subsection) if run and subsection else None
    if run is None or proof is None or subsection is None:
        return {}
    patched = run.patched_proof_of(subsection)
    return {"proof": {**proof_object(proof), **({"patched": proof_object(patched)} if patched else {})}}


def _subsection(unit: str, report: SubsectionReport) -> dict[str, Any]:
    d = report.description
    entry: dict[str, Any] = {
        "unit": unit,
        "symbol": d.symbol,
        "name": d.name,
        "file": d.path,
        "line": d.line,
        "parent": report.parent.symbol,
        "ifdef": report.ifdef,
        "needed": d.needed,
        "post_load": d.post_load,
        "fields": list(report.fields),
        "consumers": [
            {
                "field": c.field,
                "function": c.handoff.function,
                "file": c.handoff.path,
                "line": c.handoff.line,
                "guards": list(c.guards),
                "host_capability_guards": list(c.capability_guards),
                "probes": [_probe(p) for p in c.probes],
            }
            for c in report.consumers
        ],
        "post_load_checks": list(report.post_load_checks),
        "compat_properties": [m.property.name for m in report.compat],
        "verdict": report.verdict,
    }
    model = report.model_check
    if model is not None:
        # Only where it applies, so documents of targets without a CPU model stay as they were.
        file, line = model.location or (None, None)
        entry["cpu_model_check"] = {
            "function": model.function,
            "file": file,
            "line": line,
            "features": list(model.features),
            "guards": list(model.guards),
        }
    return entry


def render(result: AuditResult) -> str:
    return dumps(document(result)) + "\n"
