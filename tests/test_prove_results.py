"""Classifying what the destinations did, and reading patch series and streams, without KVM."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.audit import audit
from analyzer.errors import InputError
from analyzer.prove.build import QemuBuild
from analyzer.prove.experiment import Destination, Observation, cpu_subsections, firmware_writes
from analyzer.prove.interposer import KvmLog
from analyzer.prove.plan import Plan, distinctive, plan_for
from analyzer.prove.results import (
    CONFIRMED,
    NOT_ATTEMPTED,
    NOT_REPRODUCED,
    PATCH_FAILED,
    PATCH_VERIFIED,
    REFUSED,
    classify,
    classify_patched,
)
from analyzer.prove.run import cpu_unit, read_series
from support import MINI

SMI = 0x34
VALUE = distinctive(SMI)
SUBSECTION = "cpu/msr_smi_count"
MESSAGE = "cpu/msr_smi_count: host kernel lacks MSR_SMI_COUNT; KVM cannot restore the migrated state"


class Host:
    msrs = frozenset({SMI})
    feature_msrs: frozenset[int] = frozenset()

    def has_cap(self, number: int) -> bool:
        return True


@pytest.fixture(scope="module")
def plan() -> Plan:
    analysis = cpu_unit(audit(MINI, ["i386"]))
    report = next(r for r in analysis.subsections if r.description.name == SUBSECTION)
    return plan_for(report, analysis, {"MSR_SMI_COUNT": "0x34"}, Host())  # type: ignore[arg-type]


def _seen(plan: Plan, older: Destination, *, taken: bool = True, sent: bool = True, full: bool = True) -> Observation:
    writes = firmware_writes([plan])
    # The single bits fault, the distinctive value is taken (or not).
    taken_writes = tuple(taken and w.value == VALUE for w in writes)
    stream = {SUBSECTION: {"env.msr_smi_count": f"{VALUE:#018x}"}} if sent else {}
    delivered = Destination(True, "", KvmLog(msr_writes=((SMI, 0), (SMI, VALUE)) if full else ((SMI, 0),)))
    build = QemuBuild(Path("/q"), Path("/s"), "10.0.0", "test")
    return Observation(writes, taken_writes, stream, delivered, {SUBSECTION: older}, build)


def _older(completed: bool = True, values: tuple[int, ...] = (0,), hidden: bool = True, said: str = "") -> Destination:
    log = KvmLog(msr_writes=tuple((SMI, v) for v in values), hidden_msrs=frozenset({SMI}) if hidden else frozenset())
    return Destination(completed, said, log)


def test_confirmed_when_the_older_destination_completes_without_the_value(plan: Plan) -> None:
    proof = classify(plan, _seen(plan, _older()))
    assert proof.result == CONFIRMED
    assert f"MSR_SMI_COUNT={VALUE:#x} never reached KVM" in proof.reason
    assert proof.msrs[0].full == (0, VALUE) and proof.msrs[0].older == (0,)


def test_not_reproduced_when_the_older_destination_delivers_it_anyway(plan: Plan) -> None:
    assert classify(plan, _seen(plan, _older(values=(0, VALUE)))).result == NOT_REPRODUCED


def test_refused_when_the_older_destination_fails_the_migration(plan: Plan) -> None:
    proof = classify(plan, _seen(plan, _older(completed=False, said="error while loading state")))
    assert proof.result == REFUSED and proof.older_said == "error while loading state"


@pytest.mark.parametrize(
    ("seen_kwargs", "older_kwargs", "why"),
    [
        ({"taken": False}, {}, "the guest CPU refused every wrmsr to MSR_SMI_COUNT (0x34) (#GP)"),
        ({"sent": False}, {}, "needed() stayed false"),
        ({"full": False}, {}, "even the destination on the real host did not hand"),
        ({}, {"hidden": False}, "never asked for MSR_SMI_COUNT"),
    ],
)
def test_not_attempted_when_the_run_cannot_show_anything(
    plan: Plan, seen_kwargs: dict[str, bool], older_kwargs: dict[str, bool], why: str
) -> None:
    proof = classify(plan, _seen(plan, _older(**older_kwargs), **seen_kwargs))
    assert proof.result == NOT_ATTEMPTED
    assert why in proof.reason


def test_patch_verified_in_fail_mode_needs_the_failure_and_the_message(plan: Plan) -> None:
    failed = _older(completed=False, said=f"qemu-system-x86_64: {MESSAGE} / load of migration failed")
    assert classify_patched(plan, _seen(plan, failed), MESSAGE, "fail", "0001.patch").result == PATCH_VERIFIED
    other = _older(completed=False, said="some other error")
    assert classify_patched(plan, _seen(plan, other), MESSAGE, "fail", "0001.patch").result == PATCH_FAILED
    completed = _older(said=MESSAGE)
    assert classify_patched(plan, _seen(plan, completed), MESSAGE, "fail", "0001.patch").result == PATCH_FAILED


def test_patch_verified_in_warn_mode_needs_completion_and_the_message(plan: Plan) -> None:
    warned = _older(said=f"qemu-system-x86_64: warning: {MESSAGE}")
    assert classify_patched(plan, _seen(plan, warned), MESSAGE, "warn", "0001.patch").result == PATCH_VERIFIED
    assert classify_patched(plan, _seen(plan, _older()), MESSAGE, "warn", "0001.patch").result == PATCH_FAILED


PATCH = """\
Subject: [PATCH] target/i386: fail migration of cpu/msr_tsc_adjust without MSR_TSC_ADJUST
--- a/target/i386/machine.c
+++ b/target/i386/machine.c
@@ -554,11 +554,24 @@
+    if (kvm_enabled() && !kvm_has_msr_tsc_adjust()) {
+        error_report("cpu/msr_tsc_adjust: host kernel lacks MSR_TSC_ADJUST; "
+                     "KVM cannot restore the migrated state");
+        return -EINVAL;
"""


def test_read_series_takes_subsection_message_and_mode_from_each_patch(tmp_path: Path) -> None:
    (tmp_path / "0001-a.patch").write_text(PATCH)
    (tmp_path / "0002-b.patch").write_text(PATCH.replace("error_report", "warn_report").replace("tsc_adjust", "x"))
    first, second = read_series(tmp_path)
    assert (first.subsection, first.mode) == ("cpu/msr_tsc_adjust", "fail")
    assert (
        first.message == "cpu/msr_tsc_adjust: host kernel lacks MSR_TSC_ADJUST; KVM cannot restore the migrated state"
    )
    assert (second.subsection, second.mode) == ("cpu/msr_x", "warn")


def test_read_series_refuses_what_is_not_a_fix_series(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"holds no \.patch files"):
        read_series(tmp_path)
    (tmp_path / "0001-a.patch").write_text("--- a/x\n+++ b/x\n+int x;\n")
    with pytest.raises(InputError, match="not a vmstate-guard fix patch"):
        read_series(tmp_path)
    with pytest.raises(InputError, match="not a directory"):
        read_series(tmp_path / "0001-a.patch")


def test_cpu_subsections_reads_analyze_migration_state_with_nesting() -> None:
    # The shape of scripts/analyze-migration.py's state dump.
    state = {
        "ram (1)": {"section sizes": {}},
        "cpu (0)": {
            "env.regs": ["0x0"],
            "cpu/msr_tsc_adjust": {"env.tsc_adjust": "0x5a5a00000000003b"},
            "cpu/kvm_nested_state": {"hdr.size": "0x80", "cpu/kvm_nested_state/vmx": {"hdr.vmx.vmxon_pa": "0x0"}},
        },
        "apic (5)": {"cpu/fake": {}},
    }
    assert sorted(cpu_subsections(state)) == ["cpu/kvm_nested_state", "cpu/kvm_nested_state/vmx", "cpu/msr_tsc_adjust"]
