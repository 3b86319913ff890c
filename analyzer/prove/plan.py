"""What to do for one subsection: which MSRs the guest writes, which probe to hide.

The analysis says where each field reaches KVM (`kvm_msr_entry_add(cpu,
MSR_TSC_ADJUST, env->tsc_adjust)`) and which host probes guard it
(`MSR_TSC_ADJUST` in the MSR index list). The guest writes those MSRs; the
older-kernel destination hides those probes. A subsection with no such probe
(a negative control the analysis calls `unconditional`) hides the MSRs it is
written through instead: the destination's kernel then lacks them, and a
correct analysis predicts that QEMU hands the value over all the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..audit import Analysis
from ..verdicts import SubsectionReport
from .constants import evaluate
from .host import HostKvm
from .interposer import Hide

# Guest writes a few MSRs only accept after some set-up (written first, in order).
# The TSC deadline holds a value only while the LAPIC timer is in TSC-deadline
# mode, which real mode reaches through x2APIC: enable it in IA32_APIC_BASE,
# then set the x2APIC LVT timer (0x832) to TSC-deadline mode, masked.
SETUP: Mapping[str, tuple[tuple[str, str], ...]] = {
    "MSR_IA32_TSCDEADLINE": (("MSR_IA32_APICBASE", "0xfee00d00"), ("0x832", "0x50020")),
}
# Tried in this order, so the last one the CPU takes is what the MSR holds:
# a distinctive value last, single bits before it for MSRs that take only
# some bits (MSR_VIRT_SSBD takes bit 2, MSR_K7_HWCR bit 18).
_SINGLE_BITS = (1 << 0, 1 << 2, 1 << 18)
_IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")


def distinctive(index: int) -> int:
    """A value no reset or default puts into MSR `index`: 0x5a5a0000_0000NNNN."""
    return 0x5A5A_0000_0000_0000 | (index & 0xFFFF_FFFF)


@dataclass(frozen=True)
class MsrTarget:
    field: str  # env.tsc_adjust
    name: str  # MSR_TSC_ADJUST, as the put site writes it
    index: int
    candidates: tuple[int, ...]  # written in order; the last the CPU takes stays


@dataclass(frozen=True)
class Plan:
    report: SubsectionReport
    targets: tuple[MsrTarget, ...]
    setup: tuple[tuple[int, int], ...]  # (index, value) written before the targets
    hide: Hide
    hidden: tuple[str, ...]  # the probes hidden, by name: MSR_TSC_ADJUST, KVM_CAP_TSC_CONTROL
    skip: str | None = None  # why it is not attempted

    @property
    def subsection(self) -> str:
        return self.report.description.name or self.report.description.symbol


def _value_of(expression: str, defines: Mapping[str, str]) -> int | None:
    """An MSR expression's value; loop variables (`HV_X64_MSR_STIMER0_CONFIG + j * 2`) are 0."""
    variables = {name: 0 for name in _IDENTIFIER.findall(expression) if name not in defines and name.islower()}
    return evaluate(expression, defines, variables)


def _skipped(report: SubsectionReport, why: str) -> Plan:
    return Plan(report, (), (), Hide(), (), why)


def plan_for(report: SubsectionReport, analysis: Analysis, defines: Mapping[str, str], host: HostKvm) -> Plan:
    """The experiment for one subsection, or a Plan whose `skip` says why there is none."""
    fields = set(report.guarded_fields) or {consumer.field for consumer in report.consumers}
    if not fields:
        return _skipped(report, "no field of it is handed to KVM on the put path")
    msr_at = {(access.path, access.line): access.msr for access in analysis.msr_puts}
    targets: list[MsrTarget] = []
    others: list[str] = []
    for consumer in report.consumers:
        if consumer.field not in fields:
            continue
        expression = msr_at.get((consumer.handoff.path, consumer.handoff.line))
        index = _value_of(expression, defines) if expression else None
        if expression is not None and index is None:
            return _skipped(report, f"the value of {expression} (the MSR {consumer.field} is put to) is unknown")
        if expression is None or index is None:
            others.append(f"{consumer.field} ({consumer.handoff.how} in {consumer.handoff.function}())")
            continue
        if all(target.index != index for target in targets):
            candidates = (*(bit for bit in _SINGLE_BITS), distinctive(index))
            targets.append(MsrTarget(consumer.field, expression, index, candidates))
    if not targets:
        return _skipped(
            report,
            "no guest can set this kind of state yet: the firmware writes MSRs, and "
            + ", ".join(sorted(set(others)))
            + " is not one",
        )
    setup: list[tuple[int, int]] = []
    for target in targets:
        for name, value in SETUP.get(target.name, ()):
            index, number = _value_of(name, defines), _value_of(value, defines)
            if index is not None and number is not None:
                setup.append((index, number))
    return _with_hide(report, tuple(targets), tuple(setup), defines, host)


def _with_hide(
    report: SubsectionReport,
    targets: tuple[MsrTarget, ...],
    setup: tuple[tuple[int, int], ...],
    defines: Mapping[str, str],
    host: HostKvm,
) -> Plan:
    msrs: list[int] = []
    caps: list[int] = []
    names: list[str] = []
    probes = [(probe.kind, probe.name) for probe in report.required] or [
        ("msr-index-list", target.name) for target in targets
    ]
    for kind, name in sorted(set(probes)):
        value = _value_of(name, defines)
        if kind not in ("msr-index-list", "kvm-cap") or value is None:
            return Plan(report, targets, setup, Hide(), (), f"the interposer cannot hide a {kind} probe ({name}) yet")
        if kind == "msr-index-list":
            if value not in host.msrs and value not in host.feature_msrs:
                why = f"this host's KVM does not list {name} ({value:#x}) itself, so there is nothing to hide"
                return Plan(report, targets, setup, Hide(), (), why)
            msrs.append(value)
        else:
            if not host.has_cap(value):
                why = f"this host's KVM lacks {name} ({value}) itself, so there is nothing to hide"
                return Plan(report, targets, setup, Hide(), (), why)
            caps.append(value)
        names.append(name)
    return Plan(report, targets, setup, Hide(msrs=tuple(msrs), caps=tuple(caps)), tuple(names))
