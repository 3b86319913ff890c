"""SARIF 2.1.0, for GitHub code scanning, GitLab and IDE viewers.

Each finding's evidence chain becomes `relatedLocations`, and its message
links each of them (`[needed(): foo](1)`): GitHub code scanning shows a
related location only where the message embeds such a link. The line-free
fingerprint is a `partialFingerprints` entry for viewers that read it
(GitHub ignores keys of its own choosing and computes primaryLocationLineHash
itself). Notes on regions the parser could not understand are tool
notifications.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from ..audit import AuditResult
from ..findings import Finding, Location
from ..rules import RULES, Rule
from .json_report import proof_entry
from .json_text import dumps

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "vmstateGuardFingerprint/v1"
_LEVELS = {"error": "error", "warning": "warning", "note": "note"}
# The section of a rule's documentation that is its code example.
_EXAMPLE = "Example"
_BASE_ID = "SRCROOT"


def _physical(location: Location) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": location.path, "uriBaseId": _BASE_ID}}
    if location.line >= 1:
        physical["region"] = {"startLine": location.line, "startColumn": max(location.column, 1)}
    return physical


def sections(documentation: str) -> list[tuple[str, str]]:
    """(title, body) of each section of a rule's documentation: a title line at the
    margin, then its indented body, dedented (the first line, `VG001 name`, is left out)."""
    found: list[tuple[str, list[str]]] = []
    for line in documentation.splitlines()[1:]:
        if line and not line[0].isspace():
            found.append((line.strip(), []))
        elif found:
            found[-1][1].append(line)
    return [(title, textwrap.dedent("\n".join(body)).strip("\n")) for title, body in found]


def _paragraphs(body: str) -> list[str]:
    """The body's paragraphs, each unwrapped onto one line."""
    return [" ".join(part.split()) for part in re.split(r"\n\s*\n", body) if part.strip()]


def _markdown(rule: Rule) -> str:
    parts = [f"**{rule.id} {rule.name}**: {rule.summary}."]
    for title, body in sections(rule.documentation):
        parts.append(f"## {title}")
        if title == _EXAMPLE:
            parts.append(f"```c\n{body}\n```")
        else:
            parts.extend(_paragraphs(body))
    return "\n\n".join(parts) + "\n"


def _rule(rule: Rule) -> dict[str, Any]:
    checks = sections(rule.documentation)[0][1]
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": " ".join(_paragraphs(checks))},
        "help": {"text": rule.documentation, "markdown": _markdown(rule)},
        "defaultConfiguration": {"level": _LEVELS[rule.severity]},
        "properties": {"precision": rule.confidence, "tags": ["migration", "kvm", "vmstate"]},
    }


def _plain(text: str) -> str:
    """Message text with SARIF's link syntax escaped (a literal `[` reads as one)."""
    return re.sub(r"([\\\[\]])", r"\\\1", text)


def _message(finding: Finding) -> str:
    """The finding's message, then its evidence as links to the related locations by id."""
    links = [f"[{_plain(r.message)}]({number})" for number, r in enumerate(finding.related, start=1)]
    message = _plain(finding.message)
    return f"{message}. Evidence: {'; '.join(links)}." if links else message


def _result(finding: Finding, index: dict[str, int], result: AuditResult) -> dict[str, Any]:
    return {
        "ruleId": finding.rule,
        "ruleIndex": index[finding.rule],
        "level": _LEVELS[finding.severity],
        "message": {"text": _message(finding)},
        "locations": [{"physicalLocation": _physical(finding.location)}],
        "relatedLocations": [
            {"id": number, "physicalLocation": _physical(r.location), "message": {"text": r.message}}
            for number, r in enumerate(finding.related, start=1)
        ],
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "properties": {
            "subsection": finding.subsection,
            "confidence": finding.confidence,
            **proof_entry(result, finding.subsection if finding.rule == "VG001" else None),
        },
    }


def document(result: AuditResult, verbose: bool = False) -> dict[str, Any]:
    index = {rule.id: i for i, rule in enumerate(RULES)}
    notifications = [
        {
            "level": "note",
            "message": {"text": d.message},
            "locations": [{"physicalLocation": _physical(Location(d.path, d.line))}],
        }
        for d in (result.diagnostics if verbose else result.notes)
    ]
    command = "check" if result.base is not None else "audit"
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
                # A category per command: GitHub keeps the alerts of each apart.
                "automationDetails": {"id": f"vmstate-guard/{command}/"},
                # Paths are relative to the tree analysed, wherever it is checked out:
                # no absolute path, so the document is the same on every machine.
                "originalUriBaseIds": {_BASE_ID: {"description": {"text": "the top of the QEMU tree analysed"}}},
                "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
                "results": [_result(finding, index, result) for finding in result.findings],
                "columnKind": "unicodeCodePoints",
            }
        ],
    }


def render(result: AuditResult, verbose: bool = False) -> str:
    return dumps(document(result, verbose)) + "\n"
