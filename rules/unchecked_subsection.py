"""VG001 unchecked-capability-subsection

What it checks
    A VMState subsection at least one of whose fields reaches KVM, on the
    destination's put path (kvm_arch_put_registers and what it calls), only
    behind a host-capability condition: a flag probed from the host kernel
    (`has_msr_smi_count`, set from KVM_GET_MSR_INDEX_LIST; `has_exception_payload`,
    from KVM_CAP_EXCEPTION_PAYLOAD), when no post_load of the subsection or of
    a description containing it verifies that capability.

What counts as a check
    A post_load of the subsection or of a description containing it (or a
    function it calls) that fails or warns when the capability alone is
    missing. Or, for targets whose profile has a [cpu_model] table, the
    guest CPU model: when needed() returns true only if it tests a CPU-model
    feature (`return s390_has_feat(S390_FEAT_VECTOR);`) and the profile
    pairs that feature with the guard's constant (S390_FEAT_VECTOR =
    "KVM_SYNC_VRS"), a destination with the same CPU model refuses to start
    on a host without the feature (s390x: check_compatibility() at realize),
    so the guard holds there. Such a subsection is `checked`, and reports
    name the CPU-model check, not a post_load (JSON `cpu_model_check`). It
    is no protection for runs without a CPU model.

Why it matters
    Source and destination run the same QEMU, but the destination host has
    an older kernel. The subsection loads without complaint, then the put
    code skips the write because the flag is false: the guest's state is
    dropped and migration reports success.

Example
    static bool msr_foo_needed(void *opaque)
    {
        X86CPU *cpu = opaque;
        return cpu->env.msr_foo != 0;
    }

    static const VMStateDescription vmstate_msr_foo = {
        .name = "cpu/msr_foo",
        .needed = msr_foo_needed,          /* no .post_load */
        .fields = (const VMStateField[]) {
            VMSTATE_UINT64(env.msr_foo, X86CPU),
            VMSTATE_END_OF_LIST()
        }
    };

    /* kvm.c */
    if (has_msr_foo) {                     /* case MSR_FOO: has_msr_foo = true; */
        kvm_msr_entry_add(cpu, MSR_FOO, env->msr_foo);
    }

Fix
    Give the subsection a post_load that fails (or warns) when KVM is in
    use and the capability is missing, through an accessor exported from
    the KVM code (`kvm_has_msr_foo()`), as `nested_state_post_load` does with
    `kvm_max_nested_state_length()`. Where a machine-type compat property
    keeps needed() false for old machine types, the finding says which:
    users on old kernels who stay on those machine types are safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..findings import Finding, Location, Related
from ..verdicts import UNCHECKED, SubsectionReport
from .meta import RuleInfo

if TYPE_CHECKING:
    from ..audit import Analysis

INFO = RuleInfo(
    id="VG001",
    name="unchecked-capability-subsection",
    severity="warning",
    confidence="high",
    summary="subsection state reaches KVM only behind a host capability that no post_load verifies",
)


def check(analysis: Analysis) -> Iterator[Finding]:
    unchecked = {r.description.symbol: r for r in analysis.subsections if r.verdict == UNCHECKED}
    folded: dict[str, list[SubsectionReport]] = {}
    for report in unchecked.values():
        outer = _enclosing_finding(report, unchecked)
        if outer is not None:
            folded.setdefault(outer.description.symbol, []).append(report)
    for symbol, report in unchecked.items():
        if _enclosing_finding(report, unchecked) is None:
            yield _finding(report, folded.get(symbol, []))


def folded_into_findings(analysis: Analysis) -> int:
    """How many unchecked subsections have no finding of their own: an enclosing one's covers them."""
    unchecked = {r.description.symbol: r for r in analysis.subsections if r.verdict == UNCHECKED}
    return sum(1 for report in unchecked.values() if _enclosing_finding(report, unchecked) is not None)


def _enclosing_finding(report: SubsectionReport, unchecked: dict[str, SubsectionReport]) -> SubsectionReport | None:
    """The outermost unchecked subsection containing this one for the same capability.

    Nested subsections of `cpu/nested_state` travel in one KVM_SET_NESTED_STATE
    and are fixed by one post_load in the outer subsection: one finding, not five.
    """
    probes = {p.name for p in report.required}
    outer = None
    for symbol in report.enclosing:
        candidate = unchecked.get(symbol)
        if candidate is not None and probes & {p.name for p in candidate.required}:
            outer = candidate
    return outer


def _finding(report: SubsectionReport, nested: list[SubsectionReport]) -> Finding:
    description = report.description
    name = description.name or description.symbol
    guarded = [c for c in report.consumers if c.field in report.guarded_fields and c.capability_guards]
    flags = sorted({g for c in guarded for g in c.capability_guards})
    probes = sorted({p.name for p in report.required})
    message = (
        f"subsection '{name}' hands {_some(report.guarded_fields)} to KVM only if "
        f"{' / '.join(flags) or 'a host capability'} ({', '.join(probes) or 'host probe'}), "
        f"and no post_load checks it: a destination on an older kernel drops this state silently"
    )
    related: list[Related] = []
    if description.needed:
        path, line = report.needed_at or (description.path, description.line)
        related.append(Related(Location(path, line), f"needed(): {description.needed}"))
    for consumer in guarded[:3]:
        handoff = consumer.handoff
        related.append(
            Related(
                Location(handoff.path, handoff.line, handoff.column),
                f"{consumer.field} {handoff.how} in {handoff.function}() only if {' && '.join(consumer.guards)}",
            )
        )
    for probe in report.required:
        related.append(
            Related(Location(probe.path, probe.line), f"{probe.name} probed ({probe.kind}) in {probe.function}()")
        )
    for mitigation in report.compat:
        machines = ", ".join(m.name for m in mitigation.machines) or "no machine type"
        for array, line in zip(mitigation.arrays, mitigation.entry_lines, strict=True):
            related.append(
                Related(
                    Location(array.path, line),
                    f"compat property {mitigation.property.name}=off in {array.symbol} keeps needed() false "
                    f"for {machines}",
                )
            )
    if nested:
        names = ", ".join(sorted(n.description.name or n.description.symbol for n in nested))
        message += f"; the same post_load would cover its nested subsections {names}"
    if report.compat and any(m.arrays for m in report.compat):
        message += "; mitigated for old machine types by " + ", ".join(
            f"{m.property.name}" for m in report.compat if m.arrays
        )
    return INFO.finding(
        subsection=name,
        message=message,
        location=Location(description.path, description.line, description.column),
        related=tuple(related),
        # The wire name, not the C symbol: QEMU renames symbols
        # (vmstate_msr_hypercall_hypercall became vmstate_msr_hyperv_hypercall).
        key=(description.path, name),
        capabilities=tuple(probes),
    )


def _some(fields: tuple[str, ...], shown: int = 3) -> str:
    """`a, b, c and 29 more`: a register file should not fill the message."""
    if len(fields) <= shown + 1:
        return ", ".join(fields)
    return f"{', '.join(fields[:shown])} and {len(fields) - shown} more"
