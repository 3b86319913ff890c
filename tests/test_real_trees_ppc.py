"""PowerPC verdicts on real QEMU releases, checked by hand against their C source
(target/ppc/machine.c, target/ppc/kvm.c, hw/ppc/spapr_cpu_core.c). Skipped
without VMSTATE_GUARD_QEMU_5/_7/_10."""

from __future__ import annotations

from functools import cache

import pytest

from analyzer.audit import AuditResult, audit
from support import real_tree

VERSIONS = ["5", "7", "10"]

# The same in 5.2, 7.2 and 10.0 (kvm.c lines as 5.2 / 7.2 / 10.0):
# - cpu/fpu, cpu/altivec, cpu/vsx: kvm_put_fp (608/610/625) puts env->fpscr
#   (a local copy) and env->vsr through cpu_fpr_ptr/cpu_vsrl_ptr/cpu_avr_ptr,
#   guarded only by env->insns_flags, the guest CPU model.
# - cpu/tm: KVM_REG_PPC_TM_* under `if (cap_one_reg)` (957/959/967) and
#   MSR[TS]; cap_one_reg is KVM_CAP_ONE_REG (kvm.c 121/121/136). No post_load.
# - cpu/sr, cpu/slb: kvmppc_put_books_sregs only if cap_segstate
#   (946/948/956; KVM_CAP_PPC_SEGSTATE, 114/114/129), but kvm_arch_sync_sregs
#   (182/183/200) refuses to create a Book3S vCPU without the cap, so the
#   profile names it required: unconditional.
# - cpu/tlbmas: env->tlb.tlbm is shared with KVM in kvm_booke206_tlb_init
#   (208,237 / 209,238 / 226,255) only after a KVM_CAP_SW_TLB probe, and
#   kvm_sw_tlb_put (513/514/531) returns early unless env->kvm_sw_tlb.
COMMON = {
    "cpu/fpu": "unconditional",
    "cpu/altivec": "unconditional",
    "cpu/vsx": "unconditional",
    "cpu/tm": "unchecked",
    "cpu/sr": "unconditional",
    "cpu/slb": "unconditional",
    "cpu/tlbmas": "unchecked",
}


@cache
def _audit(major: str) -> AuditResult:
    return audit(real_tree(major), "ppc")


# Every other CPU subsection is not-kvm: TCG-only state, or not on the put path.
@pytest.mark.parametrize(
    ("major", "others"),
    [
        # 5.2 machine.c: tlb6xx 666, vmstate_tlbemb 724 (also named "cpu/tlb6xx")
        # with cpu/pbr403 713, compat 788.
        ("5", ["cpu/tlb6xx", "cpu/pbr403", "cpu/tlb6xx", "cpu/compat"]),
        # 7.2 machine.c: tlb6xx 565, vmstate_tlbemb 604 (named "cpu/tlb6xx"), compat 663.
        ("7", ["cpu/tlb6xx", "cpu/tlb6xx", "cpu/compat"]),
        # 10.0 machine.c: tlb6xx 523, tlbemb 562, compat 621 (cpu_post_load sets
        # it through kvmppc_set_compat and fails loudly), reservation 637
        # (record/replay), bhrb 660 (TCG).
        ("10", ["cpu/tlb6xx", "cpu/tlbemb", "cpu/compat", "cpu/reservation", "cpu/bhrb"]),
    ],
)
def test_cpu_verdicts(major: str, others: list[str]) -> None:
    found = [(r.description.name, r.verdict) for r in _audit(major).analysis.subsections]
    assert {name: v for name, v in found if name in COMMON} == COMMON
    assert sorted(item for item in found if item[0] not in COMMON) == sorted((n, "not-kvm") for n in others)


@pytest.mark.parametrize("major", VERSIONS)
def test_unchecked_name_their_probe(major: str) -> None:
    """Each unchecked CPU subsection depends on the capability read above."""
    found = {
        r.description.name: sorted({p.name for p in r.required})
        for r in _audit(major).analysis.subsections
        if r.verdict == "unchecked"
    }
    assert found == {
        "cpu/tm": ["KVM_CAP_ONE_REG"],
        "cpu/tlbmas": ["KVM_CAP_SW_TLB"],
    }


# hw/ppc/spapr_cpu_core.c: spapr_cpu/vpa and its nested slb_shadow and dtl are
# put by kvm_put_vpa (kvm.c 788/790/803), which kvm_arch_put_registers calls
# only under cap_one_reg and cap_papr (994/996/1002); no post_load checks
# KVM_CAP_ONE_REG. One VG001 on spapr_cpu/vpa covers the three.
@pytest.mark.parametrize("major", VERSIONS)
def test_spapr_cpu_vpa_is_unchecked(major: str) -> None:
    result = _audit(major)
    (unit,) = [a for a in result.analyses if a.profile.label == "ppc/spapr_cpu"]
    assert {r.description.name: r.verdict for r in unit.subsections} == {
        "spapr_cpu/vpa": "unchecked",
        "spapr_cpu/vpa/slb_shadow": "unchecked",
        "spapr_cpu/vpa/dtl": "unchecked",
    }
    assert [(f.rule, f.subsection) for f in result.findings if f.unit == "ppc/spapr_cpu"] == [
        ("VG001", "spapr_cpu/vpa")
    ]


# 5.2 machine.c: vmstate_tlbemb is named "cpu/tlb6xx" (a copy-paste), so its
# subsection "cpu/pbr403" (713) does not start with its parent's name and the
# loader never loads it. 7.2 dropped pbr403; 10.0 renamed the parent.
# The same copy-paste (5.2 724, 7.2 604) gives vmstate_ppc_cpu two subsections
# named "cpu/tlb6xx" (listed at 5.2 849-850, 7.2 721-722, no #if between): the
# loader's vmstate_get_subsection (migration/vmstate.c 431-440) returns
# vmstate_tlb6xx for both, so an embedded CPU's TLB is read with the 6xx
# layout (VG007). 10.0 names it "cpu/tlbemb".
@pytest.mark.parametrize(
    ("major", "expected"),
    [
        ("5", [("VG003", "cpu/pbr403"), ("VG007", "cpu/tlb6xx")]),
        ("7", [("VG007", "cpu/tlb6xx")]),
        ("10", []),
    ],
)
def test_other_rules_on_ppc_files(major: str, expected: list[tuple[str, str]]) -> None:
    found = [
        (f.rule, f.subsection)
        for f in _audit(major).findings
        if f.rule != "VG001" and (f.location.path.startswith(("target/ppc/", "hw/ppc/")) or f.unit.startswith("ppc"))
    ]
    assert found == expected


# hw/ppc/spapr.c spapr_post_load (5.2 1728, 7.2 1789, 10.0 1875) hands
# spapr->patb_entry to kvmppc_configure_v3_mmu (1763/1824/1910), which copies it
# into a local kvm_ppc_mmuv3_cfg for KVM_PPC_CONFIGURE_V3_MMU (target/ppc/kvm.c
# 306/307/324), with no capability guard; a failure fails the load. The spapr
# machine's other subsections never reach KVM.
@pytest.mark.parametrize("major", VERSIONS)
def test_spapr_patb_entry_reaches_kvm_from_post_load(major: str) -> None:
    (unit,) = [a for a in _audit(major).analyses if a.profile.label == "ppc/spapr"]
    verdicts = {r.description.name: r.verdict for r in unit.subsections}
    assert verdicts.pop("spapr_patb_entry") == "unconditional"
    assert verdicts and set(verdicts.values()) == {"not-kvm"}
