"""What prove runs for a subsection: the MSRs the guest writes and the probes it hides."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from analyzer.audit import Analysis, audit
from analyzer.prove.experiment import firmware_writes
from analyzer.prove.plan import distinctive, plan_for
from analyzer.prove.run import cpu_unit
from support import MINI

# The fixture has no cpu.h: the test gives the values its put sites and probes name.
DEFINES = {
    "MSR_SMI_COUNT": "0x34",
    "MSR_CORE_PERF_GLOBAL_CTRL": "0x38f",
    "MSR_LSTAR": "0xc0000082",
    "KVM_CAP_EXCEPTION_PAYLOAD": "164",
    "KVM_CAP_SREGS2": "200",
}


@dataclass
class FakeHost:
    msrs: frozenset[int] = frozenset({0x34, 0x38F, 0xC0000082})
    feature_msrs: frozenset[int] = frozenset()
    caps: set[int] = field(default_factory=lambda: {164, 200})

    def has_cap(self, number: int) -> bool:
        return number in self.caps


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return cpu_unit(audit(MINI, ["i386"]))


def _plan(analysis: Analysis, name: str, host: FakeHost | None = None):  # type: ignore[no-untyped-def]
    report = next(r for r in analysis.subsections if r.description.name == name)
    return plan_for(report, analysis, DEFINES, host or FakeHost())  # type: ignore[arg-type]


def test_an_msr_finding_writes_its_msr_and_hides_its_probe(analysis: Analysis) -> None:
    # kvm_put_msrs: if (has_msr_smi_count) kvm_msr_entry_add(cpu, MSR_SMI_COUNT, env->msr_smi_count);
    plan = _plan(analysis, "cpu/msr_smi_count")
    assert plan.skip is None
    assert [(t.field, t.name, t.index) for t in plan.targets] == [("env.msr_smi_count", "MSR_SMI_COUNT", 0x34)]
    assert plan.targets[0].candidates[-1] == distinctive(0x34) == 0x5A5A000000000034
    assert plan.hide.msrs == (0x34,) and plan.hide.caps == ()
    assert plan.hidden == ("MSR_SMI_COUNT",)


def test_an_unconditional_control_hides_the_msr_it_is_written_through(analysis: Analysis) -> None:
    # cpu/lstar: put under lm_capable_kernel only, which is no host probe.
    plan = _plan(analysis, "cpu/lstar")
    assert plan.skip is None
    assert plan.hide.msrs == (0xC0000082,)
    assert plan.hidden == ("MSR_LSTAR",)


def test_state_that_is_not_an_msr_is_not_attempted(analysis: Analysis) -> None:
    # cpu/exception_info reaches KVM through events.exception_payload in kvm_put_vcpu_events().
    plan = _plan(analysis, "cpu/exception_info")
    assert plan.skip is not None
    assert plan.skip.startswith("no guest can set this kind of state yet")
    assert "kvm_put_vcpu_events()" in plan.skip


def test_a_probe_the_host_lacks_is_not_attempted(analysis: Analysis) -> None:
    plan = _plan(analysis, "cpu/msr_smi_count", FakeHost(msrs=frozenset({0x38F})))
    assert plan.skip == "this host's KVM does not list MSR_SMI_COUNT (0x34) itself, so there is nothing to hide"


def test_firmware_writes_each_msr_once_with_set_up_first(analysis: Analysis) -> None:
    smi, lstar = _plan(analysis, "cpu/msr_smi_count"), _plan(analysis, "cpu/lstar")
    writes = firmware_writes([smi, smi, lstar])
    assert [w.index for w in writes] == [0x34] * 4 + [0xC0000082] * 4
    # Single bits first, the distinctive value last: the last write the CPU takes stays.
    assert [w.value for w in writes[:4]] == [1, 4, 1 << 18, distinctive(0x34)]
