"""Patch proposals: they apply, read like QEMU patches, and the audit recognises the result."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analyzer.audit import audit
from support import MINI, real_tree, run_cli


def _tree(tmp_path: Path, edits: dict[str, tuple[str, str]] | None = None) -> Path:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    for relative, (old, new) in (edits or {}).items():
        text = (tree / relative).read_text()
        assert old in text, old
        (tree / relative).write_text(text.replace(old, new, 1))
    return tree


def _fix(tree: Path, out: Path, *extra: str) -> list[Path]:
    result = run_cli("fix", str(tree), "-o", str(out), *extra)
    assert result.returncode == 0, result.stderr
    return sorted(out.glob("*.patch"))


def _apply(tree: Path, patches: list[Path]) -> None:
    for patch in patches:
        subprocess.run(["git", "apply", "--check", str(patch)], cwd=tree, check=True, capture_output=True)
        subprocess.run(["git", "apply", str(patch)], cwd=tree, check=True, capture_output=True)


def _verdicts(tree: Path) -> dict[str, str]:
    return {r.description.name or "": r.verdict for r in audit(tree).analysis.subsections}


def _touched(patch: Path) -> list[str]:
    return re.findall(r"^diff --git a/(\S+) ", patch.read_text(), re.M)


def test_series_applies_and_is_recognised(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    patches = _fix(tree, tmp_path / "out")
    assert [p.name[:5] for p in patches] == ["0001-", "0002-", "0003-", "0004-"]
    _apply(tree, patches)
    verdicts = _verdicts(tree)
    for name in ("cpu/msr_smi_count", "cpu/exception_info", "cpu/pdptrs", "cpu/xcr0"):
        assert verdicts[name] == "checked", name
    assert run_cli("audit", str(tree)).returncode == 0


def test_no_post_load_and_flag_needing_an_accessor(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (patch,) = _fix(tree, tmp_path / "out", "--subsection", "cpu/msr_smi_count")
    text = patch.read_text()
    assert _touched(patch) == ["target/i386/machine.c", "target/i386/kvm/kvm.c", "target/i386/kvm/kvm_i386.h"]
    assert "+    .post_load = msr_smi_count_post_load,\n" in text
    assert "+bool kvm_has_msr_smi_count(void)\n+{\n+    return has_msr_smi_count;\n+}\n" in text
    assert "+bool kvm_has_msr_smi_count(void);\n" in text
    assert "+#ifdef CONFIG_KVM\n+    if (kvm_enabled() && !kvm_has_msr_smi_count()) {\n" in text
    assert "+        return -EINVAL;\n" in text
    assert "Subject: [PATCH] target/i386: fail migration of cpu/msr_smi_count without MSR_SMI_COUNT\n" in text
    assert "x-migrate-smi-count compat property" in text
    assert "Signed-off-by" not in text


def test_existing_accessor_is_reused(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (patch,) = _fix(tree, tmp_path / "out", "--subsection", "cpu/exception_info")
    assert _touched(patch) == ["target/i386/machine.c"]
    assert "!kvm_has_exception_payload()" in patch.read_text()


def test_existing_post_load_is_extended(tmp_path: Path) -> None:
    tree = _tree(
        tmp_path,
        {
            "target/i386/machine.c": (
                "    .needed = xcr0_needed,\n",
                "    .needed = xcr0_needed,\n    .post_load = xcr0_post_load,\n",
            )
        },
    )
    machine = tree / "target/i386/machine.c"
    machine.write_text(
        machine.read_text().replace(
            "// ruleid: unchecked-capability-subsection\nstatic const VMStateDescription vmstate_xcr0",
            "static int xcr0_post_load(void *opaque, int version_id)\n{\n    X86CPU *cpu = opaque;\n\n"
            "    cpu->env.xcr0_loaded = true;\n    return 0;\n}\n\n"
            "static const VMStateDescription vmstate_xcr0",
        )
    )
    (patch,) = _fix(tree, tmp_path / "out", "--subsection", "cpu/xcr0")
    text = patch.read_text()
    assert ".post_load" not in text
    assert "Extend xcr0_post_load()" in text
    _apply(tree, [patch])
    patched = machine.read_text()
    assert patched.count("static int xcr0_post_load(") == 1
    # The check comes after the declarations, before the first statement.
    assert patched.index("X86CPU *cpu = opaque;") < patched.index("kvm_has_xcrs()") < patched.index("xcr0_loaded")
    assert _verdicts(tree)["cpu/xcr0"] == "checked"


def test_nested_subsection_patched_in_the_outer_one(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"target/i386/machine.c": ("    .post_load = nested_state_post_load,\n", "")})
    assert _verdicts(tree)["cpu/kvm_nested_state/inner"] == "unchecked"
    (patch,) = _fix(tree, tmp_path / "out", "--subsection", "cpu/nested_state")
    assert "!kvm_max_nested_state_length()" in patch.read_text()
    _apply(tree, [patch])
    verdicts = _verdicts(tree)
    assert verdicts["cpu/nested_state"] == verdicts["cpu/kvm_nested_state/inner"] == "checked"


def test_warn_mode_and_signoff(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (patch,) = _fix(
        tree, tmp_path / "out", "--subsection", "cpu/xcr0", "--mode", "warn", "--signoff", "Jane Doe <j@d.org>"
    )
    text = patch.read_text()
    assert "warn_report(" in text and "return -EINVAL" not in text
    assert "From: Jane Doe <j@d.org>\n" in text
    assert "\nSigned-off-by: Jane Doe <j@d.org>\n---\n" in text
    _apply(tree, [patch])
    assert _verdicts(tree)["cpu/xcr0"] == "checked"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subsection", "cpu/no_such"], "no unchecked subsection named 'cpu/no_such'"),
        (["--mode", "panic"], "invalid choice: 'panic'"),
    ],
)
def test_fix_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("fix", str(MINI), "-o", str(tmp_path / "out"), *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_fix_never_writes_into_the_tree(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    result = run_cli("fix", str(tree), "-o", str(tree / "patches"))
    assert result.returncode == 2
    assert "inside the analysed tree" in result.stderr
    assert not (tree / "patches").exists()


def test_fix_into_a_directory_holding_a_series_is_refused(tmp_path: Path) -> None:
    # `git am out/*.patch` would apply both series; the earlier one is the user's to remove.
    tree = _tree(tmp_path)
    first = _fix(tree, tmp_path / "out", "--subsection", "cpu/xcr0")
    result = run_cli("fix", str(tree), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr == (
        f"vmstate-guard: error: {tmp_path / 'out'}: holds 1 patch(es) already ({first[0].name}...); "
        "remove them or choose an empty directory, so that two series do not mix\n"
    )
    assert sorted((tmp_path / "out").glob("*.patch")) == first
    first[0].unlink()
    assert len(_fix(tree, tmp_path / "out")) == 4


REAL_FILES = [
    "VERSION",
    "include/qemu/osdep.h",
    "target/i386/machine.c",
    "target/i386/kvm/kvm.c",
    "target/i386/kvm.c",
    "target/i386/kvm/kvm_i386.h",
    "target/i386/kvm_i386.h",
    "target/i386/xsave_helper.c",
    "target/i386/kvm/xen-emu.c",
    "accel/kvm/kvm-all.c",
    "target/i386/cpu.c",
    "hw/i386/pc.c",
    "hw/core/machine.c",
    "hw/i386/pc_piix.c",
    "hw/i386/pc_q35.c",
]


@pytest.mark.parametrize("major", ["7", "10"])
def test_real_tree_series(major: str, tmp_path: Path) -> None:
    source = real_tree(major)
    patches = _fix(source, tmp_path / "patches", "--signoff", "Jane Doe <jane@example.org>")
    assert len(patches) >= 20
    # Each applies to the release (the first to the pristine tree), in order.
    first = subprocess.run(["git", "apply", "--check", str(patches[0])], cwd=source, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    copy = tmp_path / "tree"
    for relative in REAL_FILES:
        if (source / relative).is_file():
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / relative, copy / relative)
    before = audit(copy)
    _apply(copy, patches)
    after = audit(copy)
    parse_errors = lambda result: {d.message for d in result.analysis.diagnostics if "could not parse" in d.message}  # noqa: E731
    assert parse_errors(after) == parse_errors(before)
    unchecked = lambda result: {f.subsection for f in result.findings if f.rule == "VG001"}  # noqa: E731
    patched = unchecked(before) - unchecked(after)
    verdicts = {r.description.name: r.verdict for r in after.analysis.subsections}
    assert patched and all(verdicts[name] == "checked" for name in patched)
    # Only the findings no accessor can reach are left: cpu/tsc_khz's local set_ioctl.
    assert unchecked(after) == {"cpu/tsc_khz"}
    checkpatch = source / "scripts" / "checkpatch.pl"
    for patch in patches:
        done = subprocess.run(
            ["perl", str(checkpatch), "--no-tree", str(patch)], capture_output=True, text=True, check=False
        )
        assert "total: 0 errors" in done.stdout, done.stdout[-1500:]


def test_nothing_to_patch(tmp_path: Path) -> None:
    result = run_cli("fix", str(MINI.parent / "qemu-loader"), "-o", str(tmp_path / "out"))
    assert result.returncode == 0
    assert result.stderr == "vmstate-guard: no unchecked subsection: nothing to patch\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("target", "subsections", "device_files"),
    [
        # kvm_put_vcpu_events: cap_has_inject_serror_esr and kvm_has_vcpu_events() (target/arm/kvm.c).
        ("arm", {"cpu/serror"}, []),
        # target/ppc/kvm.c: cap_one_reg (tm, and kvm_put_vpa for the spapr_cpu
        # device's vpa: one accessor, added once); cpu/tlbmas's env->kvm_sw_tlb is
        # a member no accessor returns as it stands.
        ("ppc", {"cpu/tm", "spapr_cpu/vpa"}, ["hw/ppc/spapr_cpu_core.c"]),
    ],
)
def test_real_tree_series_other_targets(
    target: str, subsections: set[str], device_files: list[str], tmp_path: Path
) -> None:
    source = real_tree("10")
    patches = _fix(source, tmp_path / "patches", "--target", target, "--signoff", "Jane Doe <jane@example.org>")
    copy = tmp_path / "tree"
    for directory in (f"target/{target}", "accel/kvm", "include/hw/core"):
        shutil.copytree(source / directory, copy / directory)
    for relative in ("hw/core/machine.c", "VERSION", *device_files):
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, copy / relative)
    before = audit(copy, target)
    _apply(copy, patches)
    after = audit(copy, target)
    parse_errors = lambda result: {d.message for d in result.analysis.diagnostics if "could not parse" in d.message}  # noqa: E731
    assert parse_errors(after) == parse_errors(before)
    unchecked = lambda result: {f.subsection for f in result.findings if f.rule == "VG001"}  # noqa: E731
    assert unchecked(before) - unchecked(after) == subsections
    verdicts = {r.description.name: r.verdict for r in after.subsections}
    assert all(verdicts[name] == "checked" for name in subsections)
    added = [line for patch in patches for line in patch.read_text().splitlines() if line.startswith("+bool kvm_")]
    assert len(added) == len(set(added))  # an accessor two patches need is added by the first
    checkpatch = source / "scripts" / "checkpatch.pl"
    for patch in patches:
        text = patch.read_text()
        assert "qemu/error-report.h" in (copy / f"target/{target}/machine.c").read_text()
        assert "/**\n+bool" not in text  # not between a doc comment and its function
        done = subprocess.run(
            ["perl", str(checkpatch), "--no-tree", str(patch)], capture_output=True, text=True, check=False
        )
        assert "total: 0 errors" in done.stdout, done.stdout[-1500:]
