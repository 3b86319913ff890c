"""SARIF 2.1.0, for GitHub code scanning, GitLab and IDE viewers.

Each finding's evidence chain becomes `relatedLocations`; its line-free
fingerprint becomes a `partialFingerprints` entry, so viewers track a finding
across edits. Regions the parser could not understand are tool notifications.
"""

from __future__ import annotations

import json
from typing import Any

from ..audit import AuditResult
from ..findings import Location
from ..rules import RULES
from .json_report import proof_entry

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "vmstateGuardFingerprint/v1"
_LEVELS = {"error": "error", "warning": "warning", "note": "note"}


def _physical(location: Location) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": location.path, "uriBaseId": "SRCROOT"}}
    if location.line >= 1:
        physical["region"] = {"startLine": location.line, "startColumn": max(location.column, 1)}
    return physical


def _rule(rule: Any) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.documentation.split("\n\n", 2)[1].strip()},
        "help": {"text": rule.documentation},
        "defaultConfiguration": {"level": _LEVELS[rule.severity]},
        "properties": {"precision": rule.confidence, "tags": ["migration", "kvm", "vmstate"]},
    }


def document(result: AuditResult) -> dict[str, Any]:
    index = {rule.id: i for i, rule in enumerate(RULES)}
    results = []
    for finding in result.findings:
        results.append(
            {
                "ruleId": finding.rule,
                "ruleIndex": index[finding.rule],
                "level": _LEVELS[finding.severity],
                "message": {"text": finding.message},
                "locations": [{"physicalLocation": _physical(finding.location)}],
                "relatedLocations": [
                    {"id": i, "physicalLocation": _physical(r.location), "message": {"text": r.message}}
                    for i, r in enumerate(finding.related)
                ],
                "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
                "properties": {
                    "subsection": finding.subsection,
                    "confidence": finding.confidence,
                    **proof_entry(result, finding.subsection if finding.rule == "VG001" else None),
                },
            }
        )
    notifications = [
        {
            "level": "note",
            "message": {"text": d.message},
            "locations": [{"physicalLocation": _physical(Location(d.path, d.line))}],
        }
        for d in result.diagnostics
    ]
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "vmstate-guard",
                        "version": result.tool_version,
                        "semanticVersion": result.tool_version,
                        "rules": [_rule(rule) for rule in RULES],
                    }
                },
                "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }


def render(result: AuditResult) -> str:
    return json.dumps(document(result), indent=2) + "\n"
