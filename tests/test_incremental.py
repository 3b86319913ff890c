"""Work that follows the change: lean start-up, git blob ids as keys, incremental `check`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from support import MINI, REPO, git


def _modules_after(tmp_path: Path, *argv: str) -> set[str]:
    """The modules a whole `vmstate-guard` run imported, `sys.modules` at its end."""
    probe = (
        "import sys, analyzer.cli\n"
        "try:\n"
        f"    analyzer.cli.main({list(argv)!r})\n"
        "finally:\n"
        "    sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO.parent,
        env={"VMSTATE_GUARD_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    return set(done.stderr.rsplit("MODULES ", 1)[1].split())


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in ("networkx", "jinja2", "pygments", "markupsafe")}


def test_audit_json_and_check_import_no_graph_or_html_library(tmp_path: Path) -> None:
    repo = tmp_path / "qemu"
    shutil.copytree(MINI, repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    audited = _modules_after(tmp_path, "audit", str(repo), "--format", "json", "-o", str(tmp_path / "a.json"))
    assert json.loads((tmp_path / "a.json").read_text())["findings"]  # the run did its work
    assert _heavy(audited) == set()
    assert "analyzer.reports.json_report" in audited
    assert not {"analyzer.reports.sarif", "analyzer.reports.html", "analyzer.reports.text"} & audited
    checked = _modules_after(tmp_path, "check", str(repo), "--base", "HEAD", "-o", str(tmp_path / "c.txt"))
    assert (tmp_path / "c.txt").is_file()
    assert _heavy(checked) == set()
    # The formats that need them still get them.
    html = _modules_after(tmp_path, "audit", str(repo), "--format", "html", "-o", str(tmp_path / "a.html"))
    assert {"jinja2", "pygments"} <= html
    graph = _modules_after(tmp_path, "graph", str(repo), "-o", str(tmp_path / "g.json"))
    assert "networkx" in graph
