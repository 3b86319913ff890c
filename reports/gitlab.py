"""GitLab Code Quality report (the `codequality` artifact of a CI job).

Fields as GitLab documents them: description, check_name, fingerprint
(unique per issue), severity (info, minor, major, critical, blocker) and
location.path / location.lines.begin.
"""

from __future__ import annotations

from ..audit import AuditResult
from .json_text import dumps

_SEVERITY = {"error": "critical", "warning": "major", "note": "info"}


def render(result: AuditResult) -> str:
    issues = [
        {
            "type": "issue",
            "engine_name": "vmstate-guard",
            "check_name": f"{finding.rule} {finding.name}",
            "description": finding.message,
            "categories": ["Bug Risk"],
            "fingerprint": finding.fingerprint,
            "severity": _SEVERITY[finding.severity],
            "location": {"path": finding.location.path, "lines": {"begin": finding.location.line}},
        }
        for finding in result.findings
    ]
    return dumps(issues) + "\n"
