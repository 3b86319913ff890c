"""s390x verdicts on real QEMU releases, checked by hand against their C source
(target/s390x/machine.c, target/s390x/kvm.c in 5.2 and kvm/kvm.c from 6.1,
target/s390x/cpu_models.c). Skipped without VMSTATE_GUARD_QEMU_5/_7/_10."""

from __future__ import annotations

from functools import cache

import pytest

from analyzer.audit import AuditResult, audit
from support import real_tree


@cache
def _audit(major: str) -> AuditResult:
    return audit(real_tree(major), "s390x")


# machine.c is the same in the three releases. The put code of
# kvm_arch_put_registers: 5.2 kvm.c, 7.2 and 10.0 kvm/kvm.c.
CPU_VERDICTS = {
    # fpu_needed returns true; vector sync regs (5.2 :494, 7.2 :498, 10.0 :488),
    # else FP sync regs through *get_freg() (5.2 :501, 7.2 :505, 10.0 :495),
    # else KVM_SET_FPU through *get_freg() (5.2 :507, 7.2 :511, 10.0 :501).
    "cpu/fpu": "unconditional",
    # needed() = s390_has_feat(S390_FEAT_X), put only if can_sync_regs(cs, KVM_SYNC_Y)
    # (7.2: VRS :498, RICCB :549, GSCB :594, BPBC :599, ETOKEN :604, DIAG318 :610);
    # no post_load checks it, the destination's check_compatibility() does.
    "cpu/vregs": "checked",
    "cpu/riccb": "checked",
    "cpu/gscb": "checked",
    "cpu/bpbc": "checked",
    "cpu/etoken": "checked",
    "cpu/diag318": "checked",
    # ex_value is TCG's EXECUTE state, never handed to KVM.
    "cpu/exval": "not-kvm",
}

PAIRS = {
    "cpu/vregs": ("S390_FEAT_VECTOR", "KVM_SYNC_VRS"),
    "cpu/riccb": ("S390_FEAT_RUNTIME_INSTRUMENTATION", "KVM_SYNC_RICCB"),
    "cpu/gscb": ("S390_FEAT_GUARDED_STORAGE", "KVM_SYNC_GSCB"),
    "cpu/bpbc": ("S390_FEAT_BPB", "KVM_SYNC_BPBC"),
    "cpu/etoken": ("S390_FEAT_ETOKEN", "KVM_SYNC_ETOKEN"),
    "cpu/diag318": ("S390_FEAT_DIAG_318", "KVM_SYNC_DIAG318"),
}

# check_compatibility() in target/s390x/cpu_models.c.
CHECK_LINE = {"5": 850, "7": 501, "10": 584}


@pytest.mark.parametrize("major", ["5", "7", "10"])
def test_s390x_cpu_verdicts(major: str) -> None:
    analysis = _audit(major).analysis
    assert {r.description.name: r.verdict for r in analysis.subsections} == CPU_VERDICTS
    assert analysis.tree.kvm_layout == ("target/s390x/kvm.c" if major == "5" else "target/s390x/kvm/kvm.c")


# kvm_arch_put_registers' vector loop: `vrs[i][0] = env->vregs[i][0];` then
# `vrs[i][1] = env->vregs[i][1];` (5.2 :496-497, 7.2 :500-501, 10.0 :490-491).
VRS_LINES = {"5": (496, 497), "7": (500, 501), "10": (490, 491)}


@pytest.mark.parametrize("major", ["5", "7", "10"])
def test_s390x_vector_halves_are_handed_over_on_their_own_lines(major: str) -> None:
    (vregs,) = [r for r in _audit(major).analysis.subsections if r.description.name == "cpu/vregs"]
    first, second = VRS_LINES[major]
    # cpu/vregs carries vregs[16..31][0] and vregs[0..31][1]: each half at its line only.
    by_element = {(c.field.endswith("[0]"), c.handoff.line) for c in vregs.consumers}
    assert by_element == {(True, first), (False, second)}
    assert len(vregs.consumers) == 16 + 32


@pytest.mark.parametrize("major", ["5", "7", "10"])
def test_s390x_checked_by_the_cpu_model_not_a_post_load(major: str) -> None:
    for report in _audit(major).analysis.subsections:
        name = report.description.name
        if name not in PAIRS:
            assert report.model_check is None, name
            continue
        # The parent's cpu_post_load checks only KVM_CAP_S390_IRQ_STATE.
        assert report.checking_post_load is None, name
        model = report.model_check
        assert model is not None, name
        assert (model.features, model.guards) == ((PAIRS[name][0],), (PAIRS[name][1],))
        assert model.function == "check_compatibility"
        assert model.location == ("target/s390x/cpu_models.c", CHECK_LINE[major])


@pytest.mark.parametrize("major", ["5", "7", "10"])
def test_s390x_has_no_unchecked_subsection(major: str) -> None:
    assert not [f for f in _audit(major).findings if f.rule == "VG001"]


@pytest.mark.parametrize(
    ("major", "expected"),
    [
        # s390_flic_kvm.c: "s390-flic/ais" is put by kvm_flic_ais_post_load through
        # KVM_SET_DEVICE_ATTR with no host-capability guard (it returns -ENOSYS when
        # ais_needed() is false on the destination; the ioctl's error fails the load).
        ("5", {"s390-flic/ais": "unconditional", "s390_adapter_info/summary_offset": "not-kvm"}),
        ("7", {"s390-flic/ais": "unconditional", "s390_adapter_info/summary_offset": "not-kvm"}),
        (
            "10",
            {
                "s390-flic/ais": "unconditional",
                "s390_adapter_info/summary_offset": "not-kvm",
                "qemu-s390-flic-full": "not-kvm",  # the QEMU FLIC's, s390_flic.c
            },
        ),
    ],
)
def test_s390x_flic_verdicts(major: str, expected: dict[str, str]) -> None:
    flic = next(a for a in _audit(major).analyses if a.profile.unit == "s390-flic")
    assert {r.description.name: r.verdict for r in flic.subsections} == expected
