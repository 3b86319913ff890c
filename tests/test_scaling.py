"""Work that must grow linearly with the size of a file, pinned by counting
operations (lines of Python run), never by a wall-clock limit."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from analyzer.audit import audit
from analyzer.facts.extract import extract_file
from analyzer.preprocess import description_spans, mask
from analyzer.profile import load_profile
from analyzer.syntax import SPANS_PER_TREE, parse, parse_runs
from support import MINI


def _descriptions(count: int, state: str) -> str:
    """`count` subsections, each with its needed(), listed by one parent."""
    parts = [
        f"static bool big_{i}_needed(void *opaque)\n{{\n    return true;\n}}\n\n"
        f"static const VMStateDescription vmstate_big_{i} = {{\n"
        f'    .name = "cpu/big_{i}",\n    .needed = big_{i}_needed,\n'
        f"    .fields = (const VMStateField[]) {{\n        VMSTATE_UINT64(env.big[{i}], {state}),\n"
        "        VMSTATE_END_OF_LIST()\n    }\n};\n\n"
        for i in range(count)
    ]
    listed = "".join(f"        &vmstate_big_{i},\n" for i in range(count))
    parts.append(
        'static const VMStateDescription vmstate_big = {\n    .name = "cpu/big",\n'
        "    .fields = (const VMStateField[]) {\n        VMSTATE_END_OF_LIST()\n    },\n"
        f"    .subsections = (const VMStateDescription * const []) {{\n{listed}        NULL\n    }}\n}};\n"
    )
    return "".join(parts)


def _steps(work: Callable[[], object]) -> int:
    """How many lines of Python `work` runs (generator expressions included)."""
    count = 0

    def trace(frame: FrameType, event: str, arg: object) -> Callable[..., object]:
        nonlocal count
        count += 1
        return trace

    sys.settrace(trace)
    try:
        work()
    finally:
        sys.settrace(None)
    return count


def _audit_steps(tmp_path: Path, count: int, where: str) -> int:
    tree = tmp_path / f"{where.replace('/', '_')}-{count}"
    shutil.copytree(MINI, tree)
    with (tree / where).open("a") as file:
        file.write(_descriptions(count, "X86CPU" if where.startswith("target/") else "BigState"))
    return _steps(lambda: audit(tree))


def _growth(steps: Callable[[int], int]) -> float:
    """How the steps beyond a tree's own grow from 200 descriptions to 800: by 4
    when linear (4.25 with the sorts), by up to 16 when quadratic (5.4 to 6.6
    with the scans this replaced)."""
    base = steps(0)
    return (steps(800) - base) / (steps(200) - base)


def test_an_audit_grows_linearly_with_the_descriptions_of_machine_c(tmp_path: Path) -> None:
    # A scan per reference (VG006: which description holds it) and per
    # callback (which functions machine.c's descriptions reach) made this quadratic.
    growth = _growth(lambda n: _audit_steps(tmp_path, n, "target/i386/machine.c"))
    assert growth < 4.8, growth


def test_an_audit_grows_linearly_with_the_descriptions_of_a_device_file(tmp_path: Path) -> None:
    growth = _growth(lambda n: _audit_steps(tmp_path, n, "hw/i386/big.c"))
    assert growth < 4.8, growth


def test_many_spans_are_parsed_in_runs_with_what_one_tree_would_give() -> None:
    # tree-sitter's included ranges cost the square of their number in one tree
    # (in its own C code, where no step count sees it): a file's spans are parsed in runs.
    source = _descriptions(SPANS_PER_TREE * 2 + 10, "BigState").encode()
    masked = mask(source, description_spans)
    assert masked.spans is not None
    runs = parse_runs(masked.text, masked.spans)
    assert [len(spans or ()) for _, spans in runs] == [SPANS_PER_TREE, SPANS_PER_TREE, 11]
    whole = parse(masked.text, masked.spans).root_node
    assert [str(c) for tree, _ in runs for c in tree.root_node.named_children] == [str(c) for c in whole.named_children]
    assert [(c.start_point, c.end_point) for tree, _ in runs for c in tree.root_node.named_children] == [
        (c.start_point, c.end_point) for c in whole.named_children
    ]
    facts = extract_file("hw/misc/big.c", source, load_profile("i386"), "inventory")
    assert [d.symbol for d in facts.descriptions][-2:] == [f"vmstate_big_{SPANS_PER_TREE * 2 + 9}", "vmstate_big"]
    assert len(facts.descriptions) == SPANS_PER_TREE * 2 + 11
