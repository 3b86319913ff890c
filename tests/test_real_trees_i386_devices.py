"""x86 KVM-backed device verdicts on real QEMU releases, checked by hand against
their C source (hw/i386/kvm/*.c, hw/intc/*_common.c, hw/timer/i8254_common.c,
hw/i386/kvmvapic.c or vapic.c). Lines are "5.2 / 7.2 / 10.0". Skipped without
VMSTATE_GUARD_QEMU_5/_7/_10."""

from __future__ import annotations

from functools import cache

import pytest

from analyzer.audit import Analysis, AuditResult, audit
from support import real_tree

VERSIONS = ["5", "7", "10"]
DEVICES = ["kvmclock", "apic", "i8254", "i8259", "ioapic", "kvmvapic"]


@cache
def _audit(major: str) -> AuditResult:
    return audit(real_tree(major), "i386")


def _unit(major: str, name: str) -> Analysis:
    (unit,) = [a for a in _audit(major).analyses if a.profile.label == f"i386/{name}"]
    return unit


@pytest.mark.parametrize(
    ("major", "devices"),
    [
        ("5", DEVICES),
        ("7", DEVICES),
        # Xen emulation (hw/i386/kvm/xen_*.c) arrived in 8.0.
        ("10", [*DEVICES, "xen_overlay", "xen_evtchn"]),
    ],
)
def test_device_units_per_release(major: str, devices: list[str]) -> None:
    assert [a.profile.label for a in _audit(major).analyses] == ["i386", *(f"i386/{d}" for d in devices)]


# Every device subsection of each release, with its verdict; none is unchecked.
# - kvmclock/clock_is_reliable (hw/i386/kvm/clock.c:245 / 244 / 243): read only
#   in `if (!s->clock_is_reliable)` (:180 / 179 / 178), which picks where
#   `clock` comes from before `data.clock = s->clock` and KVM_SET_CLOCK
#   (:190-191 / 189-190 / 188-189). kvm_update_clock assigns it from the probe
#   kvm_has_adjust_clock_stable() (:153 / 152 / 151), but it is migrated: the
#   source's value, never a capability of the destination.
# - apic_sipi (hw/intc/apic_common.c:371 / 371 / 364): kvm_apic_put
#   (hw/i386/kvm/apic.c:138 / 137 / 138) never reads sipi_vector or
#   wait_for_sipi; apic.c only clears wait_for_sipi in kvm_apic_reset.
# - i8259/ltim (10.0 only, hw/intc/i8259_common.c:155): hw/i386/kvm/i8259.c
#   never mentions ltim (TCG PIC state).
# i8254, ioapic and kvmvapic have no subsections.
@pytest.mark.parametrize(
    ("major", "expected"),
    [
        ("5", {"kvmclock/clock_is_reliable": "not-kvm", "apic_sipi": "not-kvm"}),
        ("7", {"kvmclock/clock_is_reliable": "not-kvm", "apic_sipi": "not-kvm"}),
        ("10", {"kvmclock/clock_is_reliable": "not-kvm", "apic_sipi": "not-kvm", "i8259/ltim": "not-kvm"}),
    ],
)
def test_device_verdicts(major: str, expected: dict[str, str]) -> None:
    devices = [a for a in _audit(major).analyses if a.profile.unit != "cpu"]
    assert {r.description.name: r.verdict for a in devices for r in a.subsections} == expected


@pytest.mark.parametrize("major", VERSIONS)
def test_no_findings_on_device_units(major: str) -> None:
    assert [(f.unit, f.rule, f.subsection) for f in _audit(major).findings if f.unit.startswith("i386/")] == []


# The put paths are found, so the verdicts above are not for want of one.
# kvmclock: `data.clock = s->clock` in the handler's `running` branch
# (clock.c:190 / 189 / 188), with no host-capability guard on the way.
@pytest.mark.parametrize(("major", "line"), [("5", 190), ("7", 189), ("10", 188)])
def test_kvmclock_put_from_change_state_handler(major: str, line: int) -> None:
    unit = _unit(major, "kvmclock")
    (handoff,) = [h for h in unit.handoffs if h.state_path == "KVMClockState.clock"]
    assert (handoff.function, handoff.line) == ("kvmclock_vm_state_change", line)
    assert [g.condition.text for g in handoff.guards] == ["running"]
    assert not [a for g in handoff.guards for a in g.condition.atoms() if unit.capabilities.is_host_capability(a)]


# apic: kvm_apic_put passes s->apicbase to kvm_put_apicbase (apic.c:144 / 143 /
# 144), which is defined in the target's kvm.c: the CPU unit's KVM functions
# are lent to the device.
@pytest.mark.parametrize(("major", "line"), [("5", 144), ("7", 143), ("10", 144)])
def test_apic_put_reaches_target_kvm(major: str, line: int) -> None:
    unit = _unit(major, "apic")
    found = {(h.function, h.line, h.how) for h in unit.handoffs if h.state_path == "APICCommonState.apicbase"}
    assert found == {("kvm_apic_put", line, "passed to kvm_put_apicbase()")}
    assert ("kvm_put_apicbase", "kvm_put_one_msr") in {(e.caller, e.callee) for e in unit.put_calls}


# i8254: `sc = &pit->channels[i]; kchan->count = sc->count;` (i8254.c:160-161 /
# 156-157 / 145-146): PITChannelState folds into PITCommonState.channels, which
# the description carries through VMSTATE_STRUCT_ARRAY(channels, ...).
@pytest.mark.parametrize(("major", "line"), [("5", 161), ("7", 157), ("10", 146)])
def test_pit_channels_through_alias(major: str, line: int) -> None:
    unit = _unit(major, "i8254")
    found = {(h.function, h.line) for h in unit.handoffs if h.state_path == "PITCommonState.channels.count"}
    assert found == {("kvm_pit_put", line)}
    assert "PITCommonState.channels.count" in unit.migrated


# i8259: elcr_mask is put (i8259.c:95) and read back (:67) in all three, and
# no description carries it, but it is the "elcr_mask" qdev property
# (DEFINE_PROP_UINT8 in i8259_common.c:177 / 177 / 199): configuration, no VG004.
@pytest.mark.parametrize("major", VERSIONS)
def test_i8259_elcr_mask_is_a_property(major: str) -> None:
    unit = _unit(major, "i8259")
    assert "PICCommonState.elcr_mask" in {h.state_path for h in unit.handoffs}
    assert "PICCommonState.elcr_mask" in {r.state_path for r in unit.read_backs}
    assert "PICCommonState.elcr_mask" not in unit.migrated


# kvmvapic: do_vapic_enable passes s->vapic_paddr to apic_enable_vapic
# (kvmvapic.c:748 / 746, vapic.c:746), which stores it in the APIC and calls
# the class hook that issues KVM_SET_VAPIC_ADDR.
@pytest.mark.parametrize(("major", "line"), [("5", 748), ("7", 746), ("10", 746)])
def test_vapic_put_through_apic_enable_vapic(major: str, line: int) -> None:
    unit = _unit(major, "kvmvapic")
    found = {(h.line, h.how) for h in unit.handoffs if h.state_path == "VAPICROMState.vapic_paddr"}
    assert (line, "passed to apic_enable_vapic()") in found
