"""Findings on the fixture trees match the `// ruleid:` / `// ok:` annotations in their C files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analyzer.audit import audit
from analyzer.rules import RULES
from support import FIXTURES

_ANNOTATION = re.compile(r"^\s*//\s*(ruleid|ok|todoruleid):\s*([a-z-]+)\s*$")


def _annotations(tree: Path) -> tuple[set[tuple[str, int, str]], set[tuple[str, int, str]]]:
    """Return (expected, forbidden) as (file, line of the annotated construct, rule name)."""
    expected: set[tuple[str, int, str]] = set()
    forbidden: set[tuple[str, int, str]] = set()
    for path in sorted(tree.rglob("*.c")):
        relative = path.relative_to(tree).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = _ANNOTATION.match(line)
            if match:
                kind, rule = match.groups()
                (expected if kind == "ruleid" else forbidden).add((relative, number + 1, rule))
    return expected, forbidden


def _target(tree: Path) -> str:
    """`fixtures/target-arm` is audited with the arm profile; the others are i386 trees."""
    return tree.name.removeprefix("target-") if tree.name.startswith("target-") else "i386"


TREES = sorted(p for p in FIXTURES.iterdir() if (p / "target").is_dir())


@pytest.mark.parametrize("tree", TREES, ids=lambda p: p.name)
def test_findings_match_annotations(tree: Path) -> None:
    expected, forbidden = _annotations(tree)
    assert expected, f"{tree.name} has no ruleid annotation"
    names = {rule.name for rule in RULES}
    assert {rule for _, _, rule in expected | forbidden} <= names
    found = {(f.location.path, f.location.line, f.name) for f in audit(tree, _target(tree)).findings}
    missed = sorted(expected - found)
    unexpected = sorted(found - expected)
    assert not missed, "missed: " + ", ".join(f"{p}:{n} {r}" for p, n, r in missed)
    assert not unexpected, "unexpected: " + ", ".join(f"{p}:{n} {r}" for p, n, r in unexpected)
    assert not (found & forbidden)


TARGET_TREES = [p for p in TREES if (p / "expected.toml").is_file()]


@pytest.mark.parametrize("tree", TARGET_TREES, ids=lambda p: p.name)
def test_target_fixture_verdicts(tree: Path) -> None:
    """A fixture's subsections, on every unit it has, get exactly the verdicts its expected.toml lists."""
    import tomllib

    expected = tomllib.loads((tree / "expected.toml").read_text())["verdicts"]
    result = audit(tree, _target(tree))
    assert {s.description.name: s.verdict for s in result.subsections} == expected
