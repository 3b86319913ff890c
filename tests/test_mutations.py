"""Property tests: mutated inputs never crash the analyzer, and a description
the mutation leaves intact keeps its facts.

Mutations, as a half-applied patch or a broken generator would make them:
delete, duplicate and swap lines, insert balanced or unbalanced #ifdef/#endif,
inject random bytes, truncate.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.facts.extract import extract_file
from analyzer.facts.model import Description
from analyzer.profile import load_profile
from support import MINI

PROFILE = load_profile("i386")
MACHINE = (MINI / "target/i386/machine.c").read_bytes()
KVM = (MINI / "target/i386/kvm/kvm.c").read_bytes()
REAL_MACHINE = None
if os.environ.get("VMSTATE_GUARD_QEMU_10"):
    candidate = Path(os.environ["VMSTATE_GUARD_QEMU_10"]) / "target/i386/machine.c"
    if candidate.is_file():
        REAL_MACHINE = candidate.read_bytes()

_DIRECTIVES = [b"#ifdef CONFIG_FOO", b"#endif", b"#else", b"#if 0", b"#ifndef TARGET_X86_64"]


@st.composite
def mutations(draw: st.DrawFn, lines: list[bytes], start: int) -> list[bytes]:
    """Mutate `lines` from index `start` on, a few times."""
    out = list(lines)
    for _ in range(draw(st.integers(1, 4))):
        if len(out) <= start + 1:
            break
        at = draw(st.integers(start, len(out) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "directive", "balanced", "bytes", "truncate"]))
        if kind == "delete":
            del out[at]
        elif kind == "duplicate":
            out.insert(at, out[at])
        elif kind == "swap":
            other = draw(st.integers(start, len(out) - 1))
            out[at], out[other] = out[other], out[at]
        elif kind == "directive":
            out.insert(at, draw(st.sampled_from(_DIRECTIVES)))
        elif kind == "balanced":
            end = draw(st.integers(at, len(out)))
            out.insert(end, b"#endif")
            out.insert(at, b"#ifdef CONFIG_FOO")
        elif kind == "bytes":
            out.insert(at, draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" "))
        else:
            cut = draw(st.integers(0, len(out[at])))
            out = [*out[:at], out[at][:cut]]
    return out


def _without_lines(description: Description) -> Description:
    return description._replace(
        line=0,
        fields=tuple(f._replace(line=0) for f in description.fields),
        subsections=tuple(s._replace(line=0) for s in description.subsections),
    )


def _split(source: bytes) -> list[bytes]:
    return source.split(b"\n")


MACHINE_LINES = _split(MACHINE)
# Everything up to the end of vmstate_exception_info is left alone.
PROTECTED = MACHINE_LINES.index(
    b"};", MACHINE_LINES.index(b"static const VMStateDescription vmstate_exception_info = {")
)
BEFORE = {
    d.symbol: _without_lines(d)
    for d in extract_file("target/i386/machine.c", MACHINE, PROFILE, "vmstate").descriptions
    if d.symbol in ("vmstate_msr_smi_count", "vmstate_exception_info")
}

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(mutations(MACHINE_LINES, PROTECTED + 1))
def test_intact_descriptions_keep_their_facts(lines: list[bytes]) -> None:
    facts = extract_file("target/i386/machine.c", b"\n".join(lines), PROFILE, "vmstate")
    after = {d.symbol: _without_lines(d) for d in facts.descriptions if d.symbol in BEFORE}
    assert after == BEFORE


@SETTINGS
@given(mutations(MACHINE_LINES, 0))
def test_machine_mutations_never_crash(lines: list[bytes]) -> None:
    extract_file("target/i386/machine.c", b"\n".join(lines), PROFILE, "vmstate")


@SETTINGS
@given(mutations(_split(KVM), 0))
def test_kvm_mutations_never_crash(lines: list[bytes]) -> None:
    extract_file("target/i386/kvm/kvm.c", b"\n".join(lines), PROFILE, "kvm")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_real_machine_mutations_never_crash(data: st.DataObject) -> None:
    if REAL_MACHINE is None:
        import pytest

        pytest.skip("VMSTATE_GUARD_QEMU_10 is not set; scripts/fetch-qemu-trees.sh fetches the real tree")
    lines = data.draw(mutations(_split(REAL_MACHINE), 0))
    extract_file("target/i386/machine.c", b"\n".join(lines), PROFILE, "vmstate")


class _MemoryTree:
    """A tree read from memory: the fixture with some files replaced."""

    label = "memory"
    root_id = None  # nowhere to keep a snapshot
    content_id = None

    def __init__(self, replaced: dict[str, bytes]) -> None:
        self.replaced = replaced

    def has_directory(self, path: str) -> bool:
        return (MINI / path).is_dir()

    def c_files(self, exclude: tuple[str, ...] = (), suffixes: tuple[str, ...] = (".c",)) -> list[str]:
        return sorted(
            p
            for p in (q.relative_to(MINI).as_posix() for q in MINI.rglob("*") if q.name.endswith(suffixes))
            if not p.startswith(exclude)
        )

    def read(self, path: str) -> bytes | None:
        if path in self.replaced:
            return self.replaced[path]
        file = MINI / path
        return file.read_bytes() if file.is_file() else None


@SETTINGS
@given(mutations(MACHINE_LINES, 0), mutations(_split(KVM), 0))
def test_whole_audit_survives_mutations(machine: list[bytes], kvm: list[bytes]) -> None:
    from analyzer.audit import audit
    from analyzer.errors import InputError
    from analyzer.reports import renderer

    tree = _MemoryTree({"target/i386/machine.c": b"\n".join(machine), "target/i386/kvm/kvm.c": b"\n".join(kvm)})
    try:
        result = audit(tree)
    except InputError:
        return  # e.g. random bytes brought a NUL into kvm.c: a clean, reported refusal
    for name in ("text", "json", "sarif", "html"):
        renderer(name)(result)
