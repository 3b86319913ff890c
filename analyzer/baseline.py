"""Baselines: findings recorded once and hidden afterwards, each with a reason.

The file is JSON a reviewer can read and edit:

    {"version": 1, "findings": [
      {"fingerprint": "...", "rule": "VG001", "subsection": "cpu/msr_smi_count",
       "file": "target/i386/machine.c", "reason": ""}]}

Entries are matched by fingerprint only (names, never line numbers), so
their order in the file and moved code do not matter. Writing keeps the
reasons of entries that were already there and sorts by fingerprint, so a
re-written baseline diffs cleanly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import read_user_file
from .errors import InputError
from .findings import Finding

VERSION = 1


def load_baseline(path: Path) -> dict[str, dict[str, str]]:
    """Map fingerprint -> entry."""
    text = read_user_file(path, "baseline")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not a JSON baseline: {error}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("findings"), list):
        raise InputError(f"{path}: not a vmstate-guard baseline (expected version {VERSION} and a findings list)")
    entries: dict[str, dict[str, str]] = {}
    for index, entry in enumerate(data["findings"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str):
            raise InputError(f"{path}: findings[{index}] has no fingerprint")
        entries[entry["fingerprint"]] = {k: str(v) for k, v in entry.items()}
    return entries


def render_baseline(findings: Iterable[Finding], previous: dict[str, dict[str, str]] | None = None) -> str:
    previous = previous or {}
    entries: list[dict[str, Any]] = []
    for finding in sorted(findings, key=lambda f: f.fingerprint):
        entries.append(
            {
                "fingerprint": finding.fingerprint,
                "rule": finding.rule,
                "subsection": finding.subsection,
                "file": finding.location.path,
                "reason": previous.get(finding.fingerprint, {}).get("reason", ""),
            }
        )
    return json.dumps({"version": VERSION, "findings": entries}, indent=2) + "\n"
