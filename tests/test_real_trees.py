"""Facts about real QEMU releases, each verified by reading their C source.

Set VMSTATE_GUARD_QEMU_5, _7 and _10 to unpacked QEMU 5.2, 7.2 and 10.0
trees (scripts/fetch-qemu-trees.sh prints the exports); without them these
tests are skipped.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import pytest

from analyzer.audit import AuditResult, audit
from analyzer.verdicts import SubsectionReport
from support import git, real_tree, run_cli

VERSIONS = ["5", "7", "10"]


@cache
def _audit(major: str) -> AuditResult:
    """The x86 audit (CPU and KVM-backed devices), which most facts below are about."""
    return audit(real_tree(major), "i386")


@cache
def _audit_all(major: str) -> AuditResult:
    """The default audit: every target the tree has a profile for."""
    return audit(real_tree(major))


def _report(result: AuditResult, name: str) -> SubsectionReport:
    (report,) = [r for r in result.analysis.subsections if r.description.name == name]
    return report


# Entries of vmstate_x86_cpu's .subsections (NULL excluded, every #ifdef branch
# counted), counted by hand in target/i386/machine.c of each release.
@pytest.mark.parametrize(("major", "count"), [("5", 35), ("7", 44), ("10", 47)])
def test_subsections_of_vmstate_x86_cpu(major: str, count: int) -> None:
    result = _audit(major)
    listed = [r for r in result.analysis.subsections if r.parent.symbol == "vmstate_x86_cpu"]
    assert len(listed) == count


@pytest.mark.parametrize(
    ("major", "layout"), [("5", "target/i386/kvm.c"), ("7", "target/i386/kvm/kvm.c"), ("10", "target/i386/kvm/kvm.c")]
)
def test_kvm_layout(major: str, layout: str) -> None:
    assert _audit(major).analysis.tree.kvm_layout == layout


@pytest.mark.parametrize(
    ("major", "ifdefs"),
    [
        (
            "10",
            {
                "cpu/efer32": "!TARGET_X86_64",
                "cpu/nested_state": "CONFIG_KVM",
                "cpu/xen_vcpu": "CONFIG_KVM",
                "cpu/fred": "TARGET_X86_64",
                "cpu/intel_amx_xtile": "TARGET_X86_64",
            },
        ),
        ("5", {"cpu/pkru": "TARGET_X86_64", "cpu/efer32": "!TARGET_X86_64", "cpu/nested_state": "CONFIG_KVM"}),
    ],
)
def test_entries_under_ifdef(major: str, ifdefs: dict[str, str]) -> None:
    result = _audit(major)
    for name, condition in ifdefs.items():
        assert _report(result, name).ifdef == condition, name


@pytest.mark.parametrize("major", VERSIONS)
def test_msr_smi_count_unchecked_with_compat_mitigation(major: str) -> None:
    report = _report(_audit(major), "cpu/msr_smi_count")
    assert report.verdict == "unchecked"
    assert report.description.needed == "msr_smi_count_needed"
    assert {g for c in report.consumers for g in c.capability_guards} == {"has_msr_smi_count"}
    assert {(p.name, p.kind, p.function) for p in report.required} == {
        ("MSR_SMI_COUNT", "msr-index-list", "kvm_get_supported_msrs")
    }
    (mitigation,) = report.compat
    assert mitigation.property.name == "x-migrate-smi-count"
    assert [a.symbol for a in mitigation.arrays] == ["pc_compat_2_11"]
    machines = {m.name for m in mitigation.machines}
    assert {"pc-i440fx-2.11", "pc-q35-2.11", "pc-i440fx-2.4", "pc-q35-2.4"} <= machines
    assert "pc-i440fx-2.12" not in machines


# pc_compat_2_11 reaches every machine type whose options chain down to 2.11's.
@pytest.mark.parametrize(
    ("major", "oldest_i440fx"),
    [("10", "pc-i440fx-2.4"), ("7", "pc-i440fx-1.4")],
)
def test_smi_count_machine_types(major: str, oldest_i440fx: str) -> None:
    (mitigation,) = _report(_audit(major), "cpu/msr_smi_count").compat
    names = [m.name for m in mitigation.machines]
    i440fx = [n for n in names if n.startswith("pc-i440fx-")]
    q35 = [n for n in names if n.startswith("pc-q35-")]
    assert i440fx[0] == oldest_i440fx and i440fx[-1] == "pc-i440fx-2.11"
    assert q35[0] == "pc-q35-2.4" and q35[-1] == "pc-q35-2.11"


@pytest.mark.parametrize("major", VERSIONS)
def test_nested_state_checked_through_accessor(major: str) -> None:
    report = _report(_audit(major), "cpu/nested_state")
    assert report.verdict == "checked"
    assert report.checking_post_load == "nested_state_post_load"
    assert "kvm_max_nested_state_length()" in report.post_load_checks
    assert {p.name for p in report.required} == {"KVM_CAP_NESTED_STATE"}


def test_exception_payload_unchecked_10() -> None:
    report = _report(_audit("10"), "cpu/exception_info")
    assert report.verdict == "unchecked"
    assert "env.exception_payload" in report.guarded_fields
    assert {p.name for p in report.required} == {"KVM_CAP_EXCEPTION_PAYLOAD"}


# Verdicts read from the 10.0 source subsection by subsection (put path from
# kvm_arch_put_registers, flag assignments in kvm_arch_init/kvm_get_supported_msrs).
VERDICTS_10 = {
    "cpu/msr_tsc_adjust": "unchecked",  # has_msr_tsc_adjust, MSR_TSC_ADJUST
    "cpu/msr_tscdeadline": "unchecked",  # has_msr_tsc_deadline
    "cpu/mpx": "unchecked",  # has_msr_bndcfgs
    "cpu/xss": "unchecked",  # has_msr_xss
    "cpu/pdptrs": "unchecked",  # only kvm_put_sregs2, chosen by has_sregs2
    "cpu/triple_fault": "unchecked",  # has_triple_fault_event
    "cpu/tsc_khz": "unchecked",  # KVM_SET_TSC_KHZ only when set_ioctl (KVM_CAP_TSC_CONTROL)
    "cpu/msr_ia32_feature_control": "unconditional",  # has_msr_feature_control comes from guest CPUID
    "cpu/fpop_ip_dp": "unconditional",
    "cpu/svn_npt": "not-kvm",
    "cpu/svm_guest": "not-kvm",
}


@pytest.mark.parametrize(("name", "verdict"), sorted(VERDICTS_10.items()))
def test_verdicts_10(name: str, verdict: str) -> None:
    assert _report(_audit("10"), name).verdict == verdict


# QEMU 10.0 added vmstate_msr_hwcr (absent from 7.2's machine.c), written in
# kvm_put_msrs only `if (has_msr_hwcr)`, a flag set by `case MSR_K7_HWCR:` in
# kvm_get_supported_msrs, with no post_load. The other 10.0 VG001 findings
# exist in 7.2 already with the same or more capability guards. And 10.0
# dropped the .needed that 7.2's e1000/mit_state (e1000_mit_state_needed),
# ich9_pm/memhp (vmstate_test_use_memhp) and ipl/iplb_extended
# (iplb_extended_needed) had.
def test_check_between_releases_lists_what_10_added() -> None:
    from analyzer.selection import introduced

    head, base = _audit("10"), _audit("7")
    new = introduced(head, base.findings, base.analysis.tree.label).findings
    assert sorted((f.rule, f.subsection) for f in new) == [
        ("VG001", "cpu/msr_hwcr"),
        ("VG002", "e1000/mit_state"),
        ("VG002", "ich9_pm/memhp"),
        ("VG002", "ipl/iplb_extended"),
    ]


def test_check_reports_a_removed_post_load_check(tmp_path: Path) -> None:
    """The real 10.0 files committed as base; head drops nested_state's post_load."""
    from analyzer.profile import load_profile

    source = real_tree("10")
    repo = tmp_path / "qemu"
    wanted = ["VERSION", "include/qemu/osdep.h"] + [p for ps in load_profile("i386").files.values() for p in ps]
    for path in wanted:
        if (source / path).is_file():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / path, repo / path)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "QEMU 10.0 as released")
    machine = repo / "target/i386/machine.c"
    text = machine.read_text()
    assert text.count("    .post_load = nested_state_post_load,\n") == 1
    machine.write_text(text.replace("    .post_load = nested_state_post_load,\n", ""))
    git(repo, "commit", "-q", "-am", "drop the nested state check")
    result = run_cli("check", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--format", "json")
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert [f["subsection"] for f in findings] == ["cpu/nested_state"]
    assert "KVM_CAP_NESTED_STATE" in findings[0]["message"]


# Subsections without .needed in QEMU 10.0, each read in its file: no .needed
# in the description, listed in its parent's .subsections.
ALWAYS_SENT_10 = [
    ("hw/acpi/generic_event_device.c", "acpi-ged/memhp"),
    ("hw/acpi/ich9.c", "ich9_pm/memhp"),
    ("hw/block/fdc.c", "fdrive/media_rate"),
    ("hw/misc/iotkit-secctl.c", "iotkit-secctl-mpcintstatus"),
    ("hw/net/e1000.c", "e1000/mit_state"),
    ("hw/s390x/ipl.c", "ipl/iplb_extended"),
    ("hw/virtio/virtio-mmio.c", "virtio_mmio/state"),
]


def test_subsections_always_sent_10() -> None:
    found = [(f.location.path, f.subsection) for f in _audit("10").findings if f.rule == "VG002"]
    assert found == ALWAYS_SENT_10


# QEMU 5.2 had two subsections the loader could never read: a typo in
# virtio-balloon ("vitio-balloon-device/page-poison" under
# "virtio-balloon-device", fixed by 7.2) and ppc's vmstate_tlbemb, named
# "cpu/tlb6xx" by copy and paste, listing "cpu/pbr403".
def test_subsection_name_prefix() -> None:
    found = [(f.location.path, f.subsection) for f in _audit("5").findings if f.rule == "VG003"]
    assert found == [
        ("hw/virtio/virtio-balloon.c", "vitio-balloon-device/page-poison"),
        ("target/ppc/machine.c", "cpu/pbr403"),
    ]
    assert [f for f in _audit("10").findings if f.rule == "VG003"] == []


# hw/hyperv/vmbus.c exports vmstate_vmbus_dev (declared in
# include/hw/hyperv/vmbus.h) for VMBus devices to embed, and no file in 5.2,
# 7.2 or 10.0 uses it (grep -rn vmstate_vmbus_dev): the VMBus device state
# (instance id, channels, through the static vmstate_channel) is never
# migrated. Every other description is reached from a registration. In 10.0,
# ramfb_vmstate is defined twice (ramfb.c and the stub in ramfb-stubs.c) and
# reached through VMSTATE_STRUCT_POINTER in hw/vfio/display.c: not reported.
@pytest.mark.parametrize("major", VERSIONS)
def test_unregistered_descriptions(major: str) -> None:
    (finding,) = [f for f in _audit_all(major).findings if f.rule == "VG006"]
    assert (finding.location.path, finding.subsection) == ("hw/hyperv/vmbus.c", "vmstate_vmbus_dev")
    assert [r.message for r in finding.related] == [
        "declared for other files here, yet no file uses vmstate_vmbus_dev",
        "vmstate_channel, reached only through it",
    ]
    assert finding.related[0].location.path == "include/hw/hyperv/vmbus.h"


# Unchecked subsections of vmstate_x86_cpu, read subsection by subsection in
# target/i386/machine.c and the KVM code of each release. The hand reading
# counted msr_hyperv_hypercall as configuration; the tool keeps it because
# has_msr_hv_hypercall is set under hyperv_enabled(), which probes
# KVM_CAP_HYPERV (5.2: the hyperv CPUID probe) - a decision, not a miss.
UNCHECKED_5 = {
    "exception_info",
    "msr_tsc_adjust",
    "msr_tscdeadline",
    "msr_ia32_misc_enable",
    "mpx",
    "msr_hyperv_crash",
    "msr_hyperv_runtime",
    "msr_hyperv_stimer",
    "avx512",
    "xss",
    "umwait",
    "tsc_khz",
    "msr_smi_count",
    "pkru",
    "spec_ctrl",
    "virt_ssbd",
    "msr_tsx_ctrl",
    "msr_hyperv_hypercall",
}
# 7.2 adds these subsections, each unchecked too.
UNCHECKED = {
    "5": UNCHECKED_5,
    "7": UNCHECKED_5 | {"pkrs", "amd_tsc_scale_msr", "pdptrs", "intel_amx_xtile", "triple_fault"},
}


@pytest.mark.parametrize("major", ["5", "7"])
def test_unchecked_subsections(major: str) -> None:
    found = {
        (r.description.name or "").removeprefix("cpu/")
        for r in _audit(major).analysis.subsections
        if r.verdict == "unchecked" and r.parent.symbol == "vmstate_x86_cpu"
    }
    assert found == UNCHECKED[major]


# kvm_put_vcpu_events hands env->error_code to KVM (events.exception.error_code)
# and kvm_get_vcpu_events reads it back, but machine.c of all three releases
# migrates only env.has_error_code. fpus/fpstt/fptags, also put and read back,
# travel as fpus_vmstate/fptag_vmstate, rebuilt by cpu_post_load.
@pytest.mark.parametrize("major", VERSIONS)
def test_state_not_migrated(major: str) -> None:
    found = [(f.subsection, f.location.path) for f in _audit(major).findings if f.rule == "VG004"]
    layout = "target/i386/kvm.c" if major == "5" else "target/i386/kvm/kvm.c"
    assert found == [("env.error_code", layout)]


# Every MSR requested on the get path and written on the put path (through
# kvm_msr_entry_add, kvm_put_one_msr, kvm_get_one_msr) is guarded by the same
# capabilities on both sides in all three releases: the rule has no finding.
@pytest.mark.parametrize("major", VERSIONS)
def test_msr_capabilities_agree(major: str) -> None:
    result = _audit(major)
    assert len({a.msr for a in result.analysis.msr_puts}) > 40
    assert [f for f in result.findings if f.rule == "VG005"] == []


AIA = ["riscv/riscv_aplic", "riscv/riscv_imsic"]
# x86 KVM-backed devices (tests/test_real_trees_i386_devices.py); the Xen
# emulation devices arrived in 8.0.
X86 = ["i386", "i386/kvmclock", "i386/apic", "i386/i8254", "i386/i8259", "i386/ioapic", "i386/kvmvapic"]
XEN = ["i386/xen_overlay", "i386/xen_evtchn"]
PPC = [
    "ppc",
    "ppc/spapr_cpu",
    "ppc/xics-icp",
    "ppc/xics-ics",
    "ppc/spapr-xive",
    "ppc/xive-tctx",
    "ppc/spapr",
    "ppc/ppc-timebase",
]
S390X = ["s390x", "s390x/s390-flic"]


# The units the default audit covers: every target profile whose CPU and KVM
# files the release has (riscv KVM arrived in 7.0, loongarch KVM in 8.2), with
# the KVM-backed devices of each that the release has.
@pytest.mark.parametrize(
    ("major", "units"),
    [
        ("5", ["arm", "arm/gic", "arm/gicv3", "arm/gicv3_its", *X86, *PPC, *S390X]),
        ("7", ["arm", "arm/gic", "arm/gicv3", "arm/gicv3_its", *X86, *PPC, "riscv", *S390X]),
        # riscv_aplic and riscv_imsic: the in-kernel AIA, configured but never given state.
        ("10", ["arm", "arm/gic", "arm/gicv3", "arm/gicv3_its", *X86, *XEN, "loongarch", *PPC, "riscv", *AIA, *S390X]),
    ],
)
def test_default_audit_covers_every_target(major: str, units: list[str]) -> None:
    assert [a.profile.label for a in _audit_all(major).analyses] == units


# Unchecked subsections outside x86, each read in the target's machine.c and
# KVM code (10.0):
# - arm cpu/serror: env.serror.* put in kvm_put_vcpu_events only if
#   kvm_has_vcpu_events() (KVM_CAP_VCPU_EVENTS), has_esr/esr also only if
#   cap_has_inject_serror_esr; no post_load checks either (same in 5.2, 7.2).
# - loongarch cpu/lbt: kvm_loongarch_put_lbt returns early unless cpucfg[2]
#   has LBT_ALL, bits the destination derives from KVM_HAS_DEVICE_ATTR probes.
# - riscv cpu/vector and cpu/envcfg: put only if the register list
#   (KVM_GET_REG_LIST) reported vlenb / senvcfg.
# - ppc cpu/tm (cap_one_reg), cpu/tlbmas (env->kvm_sw_tlb), spapr_cpu/vpa
#   (cap_one_reg): tests/test_real_trees_ppc.py.
def test_unchecked_subsections_of_other_targets_10() -> None:
    found = sorted((f.unit, f.subsection) for f in _audit_all("10").findings if f.rule == "VG001" and f.unit != "i386")
    assert found == [
        ("arm", "cpu/serror"),
        ("loongarch", "cpu/lbt"),
        ("ppc", "cpu/tlbmas"),
        ("ppc", "cpu/tm"),
        ("ppc/spapr_cpu", "spapr_cpu/vpa"),
        ("riscv", "cpu/envcfg"),
        ("riscv", "cpu/vector"),
    ]


# The GICv3's SRE_EL1 is written by kvm_arm_gicv3_put for every CPU with no
# capability guard (arm_gicv3_kvm.c); its other subsections describe state the
# KVM GIC never has (virtualization, NMI), which realize refuses with KVM.
@pytest.mark.parametrize("major", VERSIONS)
def test_gicv3_device_verdicts(major: str) -> None:
    (gicv3,) = [a for a in _audit_all(major).analyses if a.profile.label == "arm/gicv3"]
    verdicts = {r.description.name: r.verdict for r in gicv3.subsections}
    assert verdicts.pop("arm_gicv3_cpu/sre_el1") == "unconditional"
    assert set(verdicts.values()) <= {"not-kvm"}


# arm 10.0 "cpu/vfp/fpcr_fpsr" carries FPCR and FPSR through hand-written
# fields whose get_fpcr/get_fpsr call vfp_set_fpcr/vfp_set_fpsr (machine.c
# 101-150); kvm_arch_put_fpsimd hands `fpr = vfp_get_fpsr(env)` and
# vfp_get_fpcr to KVM_SET_ONE_REG with no guard (kvm.c 2150-2157). Through the
# profile's accessors and setters: unconditional, and no hand-written field
# left untraced (5.2 and 7.2's fpscr goes through vfp_set_fpscr alike).
@pytest.mark.parametrize("major", VERSIONS)
def test_arm_fp_status_registers_are_traced(major: str) -> None:
    (arm,) = [a for a in _audit_all(major).analyses if a.profile.label == "arm"]
    verdicts = {r.description.name: r.verdict for r in arm.subsections}
    if major == "10":
        assert verdicts["cpu/vfp/fpcr_fpsr"] == "unconditional"
    assert not [d for d in arm.diagnostics if "hand-written field" in d.message and "fp" in d.message]


# VG004 over every unit: only x86's env.error_code. The GIC's num_irq is put
# (as a count, by kvm_arm_gic_put) and recomputed by kvm_arm_gic_get, but it
# is the "num-irq" qdev property (DEFINE_PROP_UINT32 in arm_gic_common.c),
# configuration set alike on both ends, not lost state.
@pytest.mark.parametrize("major", VERSIONS)
def test_state_not_migrated_over_every_unit(major: str) -> None:
    found = [(f.unit, f.subsection) for f in _audit_all(major).findings if f.rule == "VG004"]
    assert found == [("i386", "env.error_code")]
