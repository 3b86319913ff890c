"""Verdicts and evidence on the fixture tree, each checked against the fixture's C source."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analyzer.audit import AuditResult, audit
from analyzer.facts.extract import extract_file
from analyzer.profile import load_profile, load_units
from analyzer.verdicts import PathIndex, SubsectionReport, indices_meet, overlaps, path_indices, split_path
from support import FIXTURES, MINI, OLD_LAYOUT


@pytest.fixture(scope="module")
def mini() -> AuditResult:
    return audit(MINI)


def _report(result: AuditResult, name: str) -> SubsectionReport:
    matches = [r for r in result.analysis.subsections if r.description.name == name]
    assert len(matches) == 1, name
    return matches[0]


@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        ("cpu/msr_smi_count", "unchecked"),  # if (has_msr_smi_count), case MSR_SMI_COUNT
        ("cpu/exception_info", "unchecked"),  # events.exception_payload under has_exception_payload
        ("cpu/payload_extra", "checked"),  # else-branch write; post_load calls kvm_has_exception_payload()
        ("cpu/cr", "unconditional"),  # has_sregs2 ? kvm_put_sregs2 : kvm_put_sregs both write env->cr
        ("cpu/pdptrs", "unchecked"),  # only kvm_put_sregs2 writes env->pdptrs
        ("cpu/xcr0", "unchecked"),  # early `if (!has_xcrs) return 0;`
        ("cpu/pmu", "unconditional"),  # has_msr_pmu_version comes from env->features
        ("cpu/tcg_only", "not-kvm"),
        ("cpu/nested_state", "checked"),  # g_malloc0 under max_nested_state_len > 0
        ("cpu/kvm_nested_state/inner", "checked"),  # covered by the ancestor's post_load
        ("cpu/lstar", "unconditional"),  # lm_capable_kernel is not a KVM probe
        ("cpu/efer32", "unconditional"),
    ],
)
def test_verdict(mini: AuditResult, name: str, verdict: str) -> None:
    assert _report(mini, name).verdict == verdict


def test_every_subsection_has_one_verdict(mini: AuditResult) -> None:
    names = sorted(r.description.name or "" for r in mini.analysis.subsections)
    assert len(names) == len(set(names)) == 12


def test_smi_count_chain(mini: AuditResult) -> None:
    report = _report(mini, "cpu/msr_smi_count")
    consumer = next(c for c in report.consumers if c.field == "env.msr_smi_count")
    assert consumer.handoff.function == "kvm_put_msrs"
    assert consumer.handoff.line == 97
    assert consumer.guards == ("level >= KVM_PUT_RESET_STATE", "has_msr_smi_count")
    assert consumer.capability_guards == ("has_msr_smi_count",)
    assert [(p.name, p.kind, p.line) for p in report.required] == [("MSR_SMI_COUNT", "msr-index-list", 44)]
    (mitigation,) = report.compat
    assert mitigation.property.name == "x-migrate-smi-count"
    assert [a.symbol for a in mitigation.arrays] == ["pc_compat_2_11"]
    assert [m.name for m in mitigation.machines] == ["pc-i440fx-2.10", "pc-i440fx-2.11"]


def test_probe_from_kvm_cap(mini: AuditResult) -> None:
    report = _report(mini, "cpu/exception_info")
    assert report.guarded_fields == ("env.exception_payload",)
    assert [p.name for p in report.required] == ["KVM_CAP_EXCEPTION_PAYLOAD"]


def test_accessor_post_load_check(mini: AuditResult) -> None:
    report = _report(mini, "cpu/payload_extra")
    assert "kvm_has_exception_payload()" in report.post_load_checks
    assert report.checking_post_load == "payload_post_load"


def test_nested_subsection_covered_by_ancestor(mini: AuditResult) -> None:
    report = _report(mini, "cpu/kvm_nested_state/inner")
    assert report.parent.symbol == "vmstate_kvm_nested_state"
    assert report.checking_post_load == "nested_state_post_load"
    assert [p.name for p in report.required] == ["KVM_CAP_NESTED_STATE"]


@pytest.mark.parametrize(
    ("name", "ifdef"),
    [
        ("cpu/lstar", "TARGET_X86_64"),
        ("cpu/efer32", "!TARGET_X86_64"),
        ("cpu/nested_state", "CONFIG_KVM"),
        ("cpu/msr_smi_count", None),
        ("cpu/kvm_nested_state/inner", "CONFIG_KVM"),
    ],
)
def test_ifdef_inside_initializer(mini: AuditResult, name: str, ifdef: str | None) -> None:
    assert _report(mini, name).ifdef == ifdef


def test_gnu_case_range_does_not_hide_later_cases(mini: AuditResult) -> None:
    # `case MSR_MC0_CTL ... MSR_MC0_MISC:` precedes `case MSR_SMI_COUNT:`.
    probes = mini.analysis.capabilities.probes["var:target/i386/kvm/kvm.c:has_msr_smi_count"]
    assert {p.name for p in probes} == {"MSR_SMI_COUNT"}
    assert not [d for d in mini.analysis.diagnostics if d.path == "target/i386/kvm/kvm.c"]


def test_old_layout() -> None:
    result = audit(OLD_LAYOUT)
    assert result.analysis.tree.kvm_layout == "target/i386/kvm.c"
    report = _report(result, "cpu/avx512")
    assert report.verdict == "unchecked"
    assert report.ifdef == "TARGET_X86_64"
    assert [p.name for p in report.required] == ["KVM_CAP_XSAVE"]
    # Both sides of `if (!has_xsave) return kvm_put_fpu(cpu);` write env->fpop.
    assert _report(result, "cpu/fpop_ip_dp").verdict == "unconditional"


@pytest.mark.parametrize(
    ("check", "verdict"),
    [
        # Fires whatever the guest state when the buffer is missing: verifies.
        ("    if (!env->nested_state) {\n        return -EINVAL;\n    }\n", "checked"),
        # Fires only for a guest in guest mode (QEMU's cpu_post_load): does not.
        (
            "    if ((env->hflags & HF_GUEST_MASK) && !env->nested_state) {\n        return -EINVAL;\n    }\n",
            "unchecked",
        ),
    ],
    ids=["capability-alone", "guest-state-and-capability"],
)
def test_ancestor_post_load_verifies_only_on_the_capability_alone(tmp_path: Path, check: str, verdict: str) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    machine = tree / "target/i386/machine.c"
    text = machine.read_text().replace("    .post_load = nested_state_post_load,\n", "")
    text = text.replace(
        "static int cpu_post_load(void *opaque, int version_id)\n{\n",
        "static int cpu_post_load(void *opaque, int version_id)\n{\n"
        "    X86CPU *cpu = opaque;\n    CPUX86State *env = &cpu->env;\n\n" + check,
    )
    machine.write_text(text)
    assert _report(audit(tree), "cpu/nested_state").verdict == verdict


def test_buffer_filled_by_a_query_ioctl_is_host_data(tmp_path: Path) -> None:
    # `list = g_malloc0(n); kvm_ioctl(s, KVM_GET_MSR_INDEX_LIST, list); switch (list->indices[i])`:
    # the allocation alone says nothing; the ioctl after it makes the buffer host data.
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    kvm = tree / "target/i386/kvm/kvm.c"
    text = kvm.read_text()
    old = "    kvm_msr_list = g_malloc0(sizeof(msr_list) + msr_list.nmsrs * sizeof(msr_list.indices[0]));\n"
    assert old in text
    kvm.write_text(text.replace(old, "    kvm_msr_list = g_malloc0(4096);\n"))
    report = _report(audit(tree), "cpu/msr_smi_count")
    assert report.verdict == "unchecked"
    assert [p.name for p in report.required] == ["MSR_SMI_COUNT"]


@pytest.mark.parametrize(
    ("text", "holds", "shown"),
    [
        ("!has_xcrs", False, "has_xcrs"),
        ("!env->nested_state", False, "env->nested_state"),
        ("!kvm_xen_has_cap(EVTCHN_SEND)", False, "kvm_xen_has_cap(EVTCHN_SEND)"),
        ("ret < 0", False, "!(ret < 0)"),
        ("!a && b", False, "!(!a && b)"),
        ("has_xcrs", True, "has_xcrs"),
    ],
)
def test_guard_reads_without_double_negation(text: str, holds: bool, shown: str) -> None:
    from analyzer.facts.model import Condition, Guard

    assert Guard(Condition("atom", text), holds, "early-return", 1).describe() == shown


def test_long_field_lists_are_shortened_in_messages() -> None:
    from analyzer.rules.unchecked_subsection import _some

    assert _some(("a", "b", "c", "d")) == "a, b, c, d"
    assert _some(tuple(f"env.vregs[{i}][0]" for i in range(16))) == (
        "env.vregs[0][0], env.vregs[1][0], env.vregs[2][0] and 13 more"
    )


def test_hand_written_field_carries_what_its_get_function_writes(tmp_path: Path) -> None:
    # `{ .name = "serror", .info = &vmstate_serror_codec, .offset = 0 }`: the field
    # spans the whole ARMCPU; what it carries is what get_serror() writes.
    tree = tmp_path / "qemu"
    shutil.copytree(FIXTURES / "target-arm", tree)
    machine = tree / "target/arm/machine.c"
    text = machine.read_text()
    fields = (
        "        VMSTATE_UINT8(env.serror.pending, ARMCPU),\n"
        "        VMSTATE_UINT8(env.serror.has_esr, ARMCPU),\n"
        "        VMSTATE_UINT64(env.serror.esr, ARMCPU),\n"
    )
    assert fields in text
    codec = (
        "static int get_serror(QEMUFile *f, void *opaque, size_t size, const VMStateField *field)\n"
        "{\n    ARMCPU *cpu = opaque;\n\n    cpu->env.serror.pending = qemu_get_byte(f);\n    return 0;\n}\n\n"
        'static const VMStateInfo vmstate_serror_codec = { .name = "serror", .get = get_serror };\n\n'
    )
    text = text.replace("static bool serror_needed", codec + "static bool serror_needed")
    machine.write_text(
        text.replace(fields, '        { .name = "serror", .info = &vmstate_serror_codec, .offset = 0 },\n')
    )
    report = _report(audit(tree, "arm"), "cpu/serror")
    assert report.fields == ("serror",)
    assert report.verdict == "unchecked"
    assert {c.handoff.state_path for c in report.consumers} == {"ARMCPU.env.serror.pending"}


def test_hand_written_field_names_its_offsetof_member() -> None:
    source = b"""
static const VMStateDescription vmstate_x = {
    .name = "x",
    .fields = (const VMStateField[]) {
        { .name = "fpsr", .info = &vmstate_fpsr, .offset = offsetof(ARMCPU, env.vfp.fpsr) },
        { .name = "bare", .size = 4 },
        {}
    }
};
"""
    (description,) = extract_file("target/arm/machine.c", source, load_profile("arm"), "vmstate").descriptions
    (field,) = description.fields  # `{}` ends the list; a field without .info is not understood
    assert (field.path, field.struct_type, field.codec) == ("env.vfp.fpsr", "ARMCPU", "vmstate_fpsr")


@pytest.mark.parametrize(
    ("field", "handoff", "meet"),
    [
        ("env.vregs[3][0]", "S390CPU.env.vregs[0..15][0]", True),  # an FP register, through get_freg()
        ("env.vregs[16][0]", "S390CPU.env.vregs[0..15][0]", False),  # a vector register only
        ("env.vregs[3][1]", "S390CPU.env.vregs[0..15][0]", False),  # the right half
        ("env.vregs[3][1]", "S390CPU.env.vregs", True),  # an extracted path pins no element
        ("env.vregs[i][1]", "S390CPU.env.vregs[0..15][0]", False),
        ("env.vregs[i][0]", "S390CPU.env.vregs[0..15][0]", True),  # a variable index may be any
        ("env.xmm_regs[2].ZMM_Q(1)", "X86CPU.env.xmm_regs", True),
    ],
)
def test_pinned_subscripts_select_elements(field: str, handoff: str, meet: bool) -> None:
    base = split_path(handoff)[:1]
    field_indices = ((),) * len(base) + path_indices(field)
    assert overlaps(base + split_path(field), split_path(handoff))
    assert indices_meet(field_indices, path_indices(handoff)) is meet


_HANDOFF_PATHS = [
    "X86CPU.env",  # handed whole: a prefix of the field's path
    "X86CPU.env.xmm_regs.ZMM_Q",  # extends it
    "X86CPU.env.xmm_regs",  # the field's own path
    "X86CPU.env.xmm",  # a prefix as text, not as members
    "X86CPU.envx",
    "X86CPU.env.fpregs",
    "X86CPU.env.xmm_regs",  # a second handoff of the same path
    "KVMClockState.clock",
]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("X86CPU.env.xmm_regs", {0, 1, 2, 6}),
        ("X86CPU.env", {0, 1, 2, 3, 5, 6}),
        ("X86CPU", {0, 1, 2, 3, 4, 5, 6}),
        ("X86CPU.env.xmm_regs.ZMM_Q.lo", {0, 1, 2, 6}),
        ("X86CPU.env.cr", {0}),
        ("KVMClockState", {7}),
    ],
)
def test_path_index_finds_every_overlapping_path(field: str, expected: set[int]) -> None:
    paths = [split_path(p) for p in _HANDOFF_PATHS]
    found = PathIndex(paths).overlapping(split_path(field))
    assert found == expected
    assert found == {i for i, path in enumerate(paths) if overlaps(split_path(field), path)}


@pytest.mark.parametrize(
    ("needed", "verdict"),
    [
        ("return s390_has_feat(S390_FEAT_VECTOR);", "checked"),
        ("return cpu->env.vx_enabled && s390_has_feat(S390_FEAT_VECTOR);", "checked"),  # a conjunct implies it
        ("return s390_has_feat(S390_FEAT_VECTOR) || cpu->env.vx_enabled;", "unchecked"),
        ("return !s390_has_feat(S390_FEAT_VECTOR);", "unchecked"),
        ("return s390_has_feat(S390_FEAT_BPB);", "unchecked"),  # BPB vouches for KVM_SYNC_BPBC only
        ("if (!kvm_enabled()) {\n        return false;\n    }\n    return s390_has_feat(S390_FEAT_VECTOR);", "checked"),
    ],
)
def test_cpu_model_guarantee_follows_what_needed_implies(tmp_path: Path, needed: str, verdict: str) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(FIXTURES / "target-s390x", tree)
    machine = tree / "target" / "s390x" / "machine.c"
    text = machine.read_text()
    original = "return s390_has_feat(S390_FEAT_VECTOR);"
    assert text.count(original) == 1
    machine.write_text(text.replace(original, "S390CPU *cpu = opaque;\n    " + needed))
    report = _report(audit(tree, "s390x"), "cpu/vregs")
    assert report.verdict == verdict
    assert (report.model_check is not None) is (verdict == "checked")


def test_description_file_gives_the_functions_its_descriptions_reach() -> None:
    # needed() and what it calls are read; the rest of a device file is not.
    source = b"""
static bool helper(void *opaque) { return true; }
static bool x_needed(void *opaque) { return helper(opaque); }
static void realize(void *dev) { helper(dev); }
static const VMStateDescription vmstate_x = { .name = "x", .needed = x_needed };
"""
    facts = extract_file("hw/misc/x.c", source, load_profile("i386"), "vmstate")
    assert [f.name for f in facts.functions] == ["helper", "x_needed"]


def test_a_capability_kvm_init_requires_is_no_host_question(tmp_path: Path) -> None:
    # kvm_init() refuses to start without the capabilities of a KVMCapabilityInfo
    # table (kvm_check_extension_list): asking for one later tells nothing about
    # the host, so `if (!has_xcrs) return 0;` no longer guards cpu/xcr0.
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    kvm = tree / "target/i386/kvm/kvm.c"
    table = (
        "const KVMCapabilityInfo kvm_arch_required_capabilities[] = {\n"
        "    KVM_CAP_INFO(SET_TSS_ADDR),\n    KVM_CAP_INFO(XCRS),\n    KVM_CAP_LAST_INFO\n};\n\n"
    )
    text = kvm.read_text()
    assert _report(audit(tree), "cpu/xcr0").verdict == "unchecked"
    kvm.write_text(table + text)
    result = audit(tree)
    assert _report(result, "cpu/xcr0").verdict == "unconditional"
    assert {"KVM_CAP_SET_TSS_ADDR", "KVM_CAP_XCRS"} <= result.analysis.capabilities.required
    # Other capabilities are still host questions.
    assert _report(result, "cpu/msr_smi_count").verdict == "unchecked"


def test_unused_buffer_names_no_type() -> None:
    # VMSTATE_UNUSED_BUFFER(test, version, size): the 0 is a version, not the
    # type the description's fields are relative to (hw/ppc/spapr.c).
    source = b"""
static const VMStateDescription vmstate_x = {
    .name = "x",
    .fields = (const VMStateField[]) {
        VMSTATE_UNUSED_BUFFER(version_before_3, 0, 4),
        VMSTATE_UINT64_TEST(rtc_offset, SpaprMachineState, version_before_3),
        VMSTATE_END_OF_LIST()
    }
};
"""
    (description,) = extract_file("hw/ppc/spapr.c", source, load_profile("ppc"), "vmstate").descriptions
    assert [f.struct_type for f in description.fields] == [None, "SpaprMachineState"]


def test_a_parameter_copied_into_a_local_struct_is_passed_on() -> None:
    # `struct kvm_ppc_mmuv3_cfg cfg = { .process_table = proc_tbl }` then
    # `kvm_vm_ioctl(..., &cfg)`: proc_tbl leaves for KVM, so the caller's
    # spapr->patb_entry is handed over.
    from analyzer.put_path import find_handoffs, index_functions

    source = b"""
int kvmppc_configure_v3_mmu(PowerPCCPU *cpu, bool radix, bool gtse, uint64_t proc_tbl)
{
    struct kvm_ppc_mmuv3_cfg cfg = {
        .process_table = proc_tbl,
    };
    return kvm_vm_ioctl(kvm_state, KVM_PPC_CONFIGURE_V3_MMU, &cfg);
}

static int spapr_post_load(void *opaque, int version_id)
{
    SpaprMachineState *spapr = (SpaprMachineState *)opaque;

    return kvmppc_configure_v3_mmu(NULL, true, false, spapr->patb_entry);
}
"""
    (_, *devices) = load_units("ppc")
    (spapr,) = [d for d in devices if d.unit == "spapr"]
    functions = extract_file("hw/ppc/spapr.c", source, spapr, "kvm").functions
    handoffs, _ = find_handoffs(index_functions(functions), spapr)
    assert [(h.state_path, h.how) for h in handoffs] == [
        ("SpaprMachineState.patb_entry", "passed to kvmppc_configure_v3_mmu()")
    ]


def test_a_handoff_takes_the_subscripts_of_the_member_chain_it_came_from() -> None:
    from analyzer.put_path import Handoff
    from analyzer.verdicts import handoff_indices

    def indices(state_path: str, source: str) -> tuple[tuple[str, ...], ...]:
        return handoff_indices(Handoff(state_path, "f", "kvm.c", 1, 1, "copied", (), ("f",), source))

    # `vrs[i][1] = env->vregs[i][1];`: the variable stands for S390CPU.env.
    assert indices("S390CPU.env.vregs", "env->vregs[i][1]") == ((), (), ("i", "1"))
    assert indices("S390CPU.env.vregs", "& env -> vregs[i][1]") == ((), (), ("i", "1"))
    # Not a plain member chain, or not this path's members: nothing is pinned.
    assert indices("S390CPU.env.vregs", "env->vregs[i][1] + 1") == ((), (), ())
    assert indices("S390CPU.env.vregs", "regs[0]") == ((), (), ())
    assert indices("S390CPU.env.vregs", "") == ((), (), ())
    # A path that pins its own (a profile accessor's) keeps them.
    assert indices("S390CPU.env.vregs[0..15][0]", "*get_freg(env, i)") == ((), (), ("0..15", "0"))
