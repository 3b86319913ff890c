"""Functions taken back from a file's last extraction: exactly the facts a fresh extraction gives."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from analyzer.facts.extract import extract_file
from analyzer.facts.model import FileFacts
from analyzer.facts.reuse import Reuse
from analyzer.profile import load_profile
from support import MINI, real_tree

MACHINE = "target/i386/machine.c"
KVM = "target/i386/kvm/kvm.c"


def _again(path: str, before: bytes, after: bytes, role: str) -> tuple[FileFacts, FileFacts, Reuse]:
    """`after`'s facts extracted fresh, and with what extracting `before` left to reuse."""
    profile = load_profile("i386")
    first = Reuse()
    extract_file(path, before, profile, role, first)
    reuse = Reuse(first.now)
    return extract_file(path, after, profile, role), extract_file(path, after, profile, role, reuse), reuse


def _taken(reuse: Reuse, kind: str = "function:") -> int:
    return sum(1 for key in reuse.now if key in reuse.before and key.startswith(kind))


@pytest.mark.parametrize(
    ("path", "role"),
    [(MACHINE, "vmstate"), (KVM, "kvm")],
)
def test_functions_moved_by_an_edit_above_them_are_taken_back_moved(path: str, role: str) -> None:
    source = (MINI / path).read_bytes()
    after = b"/* two\n * lines more */\n" + source
    fresh, reused, reuse = _again(path, source, after, role)
    assert reused == fresh
    assert _taken(reuse) == len(fresh.functions) > 0 and reuse.changed  # all taken, all moved
    if role == "vmstate":  # and the descriptions' declarations, each taken whole
        assert _taken(reuse, "descriptions:") == len({d.line for d in fresh.descriptions}) > 0
    # Unchanged: taken as they are, and nothing new to store.
    again = Reuse(reuse.now)
    assert extract_file(path, after, load_profile("i386"), role, again) == fresh and not again.changed


def test_a_function_changed_is_extracted_and_the_others_taken() -> None:
    source = (MINI / KVM).read_bytes()
    profile = load_profile("i386")
    names = [f.name for f in extract_file(KVM, source, profile, "kvm").functions]
    assert len(names) > 2
    # A statement more in the second function: a line more for it and the ones after.
    start = source.index(names[1].encode() + b"(")
    body = source.index(b"{", start) + 1
    after = source[:body] + b"\n    int unused_here = 0;" + source[body:]
    fresh, reused, reuse = _again(KVM, source, after, "kvm")
    assert reused == fresh
    assert _taken(reuse) == len(fresh.functions) - 1


def test_a_description_changed_is_extracted_and_the_others_taken() -> None:
    source = (MINI / MACHINE).read_bytes()
    profile = load_profile("i386")
    descriptions = extract_file(MACHINE, source, profile, "vmstate").descriptions
    assert len(descriptions) > 2
    # A field more in one description, under a condition: its lines, and those after, move.
    field = source.index(b"VMSTATE_", source.index(descriptions[1].symbol.encode()))
    line_start = source.rindex(b"\n", 0, field) + 1
    after = (
        source[:line_start]
        + b"#ifdef TARGET_X86_64\n"
        + source[line_start:field]
        + b"VMSTATE_UINT64(env.new, X86CPU),\n#endif\n"
        + source[line_start:]
    )
    fresh, reused, reuse = _again(MACHINE, source, after, "vmstate")
    assert reused == fresh
    assert 0 < _taken(reuse, "descriptions:") < len({d.line for d in fresh.descriptions})


@pytest.mark.parametrize(
    "edit",
    [
        # A file-scope declaration more: every function may read it.
        lambda s: s.replace(b"#include", b"static int has_everything;\n#include", 1),
        # A preprocessor condition around the whole file's functions.
        lambda s: b"#ifdef CONFIG_KVM\n" + s + b"\n#endif\n",
        # The first function's line indented: its column is part of what it records.
        lambda s: s.replace(b"\nstatic ", b"\n  static ", 1),
    ],
    ids=["file-scope", "condition", "column"],
)
def test_what_a_function_depends_on_outside_its_bytes_is_part_of_its_key(edit: object) -> None:
    source = (MINI / KVM).read_bytes()
    after = edit(source)  # type: ignore[operator]
    assert after != source
    fresh, reused, _ = _again(KVM, source, after, "kvm")
    assert reused == fresh


def test_random_edits_of_real_files_give_the_facts_a_fresh_extraction_gives() -> None:
    tree = real_tree("10")
    chance = random.Random(20261203)
    for path, role in [(MACHINE, "vmstate"), (KVM, "kvm"), ("accel/kvm/kvm-all.c", "accel")]:
        source = (tree / path).read_bytes()
        lines = source.split(b"\n")
        for _ in range(4):
            edited = list(lines)
            at = chance.randrange(len(edited))
            match chance.randrange(3):
                case 0:
                    edited.insert(at, b"")  # a line more
                case 1:
                    del edited[at]  # a line less, maybe a brace: parse errors after it
                case _:
                    edited[at] = edited[at] + b" /* edited */"  # the same lines, one changed
            after = b"\n".join(edited)
            fresh, reused, reuse = _again(path, source, after, role)
            assert reused == fresh, f"{path}: line {at + 1} edited"
            assert _taken(reuse) > 0


def test_a_check_after_an_edit_takes_back_the_edited_files_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import analyzer.facts.extract
    from analyzer.audit import audit
    from analyzer.cache import FactsCache
    from analyzer.reports import renderer

    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    cache = FactsCache(tmp_path / "cache")
    machine = tree / MACHINE
    machine.write_text("/* edited */\n" + machine.read_text())
    audit(tree, cache=cache)  # machine.c extracted here: its functions kept for the next time
    walked: list[str] = []
    original = analyzer.facts.extract.extract_function

    def spy(node: object, text: object, path: str, *args: object) -> object:
        walked.append(path)
        return original(node, text, path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(analyzer.facts.extract, "extract_function", spy)
    machine.write_text("/* edited */\n/* again */\n" + machine.read_text().split("\n", 1)[1])
    result = audit(tree, cache=cache)
    assert MACHINE not in walked
    assert renderer("json")(result) == renderer("json")(audit(tree))
