"""VG004 kvm-state-not-migrated

What it checks
    A member of the CPU state that the destination hands to KVM on the put
    path (from kvm_arch_put_registers) and the source reads back from KVM
    on the get path (from kvm_arch_get_registers), but that no VMState
    field of the target's descriptions carries. A hand-written field
    (`.info = &vmstate_powered_off`) carries what its get function writes.
    Configuration is not state: qdev properties, the guest CPU model the
    profile names under [not_host_capability] (fixed by -cpu on both ends)
    and host_state_fields (rebuilt from host probes on each end).

Why it matters
    The source reads the value from the kernel, migration never sends it,
    and the destination hands the kernel whatever its own copy holds
    (usually the reset value). The state is lost on every migration, with
    any kernel.

Example
    /* kvm_put_vcpu_events */
    events.exception.error_code = env->error_code;
    /* kvm_get_vcpu_events */
    env->error_code = events.exception.error_code;
    /* machine.c carries env.has_error_code, but no env.error_code */

Fix
    Migrate the member: add a VMSTATE_* field for it, in a new subsection
    with a needed() so that older QEMUs keep accepting the stream; or, if the
    value really is derived, compute it in a post_load and say so in a comment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..findings import Finding, Location, Related
from ..verdicts import PathIndex, split_path
from .meta import RuleInfo

if TYPE_CHECKING:
    from ..audit import Analysis

INFO = RuleInfo(
    id="VG004",
    name="kvm-state-not-migrated",
    severity="warning",
    confidence="medium",
    summary="CPU state put to and read back from KVM that no VMState field carries",
)


def check(analysis: Analysis) -> Iterator[Finding]:
    # Indexed: each of hundreds of handoffs asks whether any of hundreds of carried paths overlaps it.
    migrated = PathIndex(split_path(path) for path in analysis.migrated)
    # qdev properties (`DEFINE_PROP_UINT32("num-irq", GICState, num_irq, 32)`) are
    # configuration, set alike on both ends: not state a migration must carry.
    configured = {
        f"{analysis.profile.state_types.get(p.struct_type, p.struct_type)}.{p.member}"
        for ff in analysis.facts
        for p in ff.properties
    }
    # So is the guest CPU model the profile names (`RISCVCPU.cfg`, fixed by -cpu
    # on both ends), and state each end rebuilds from its own host probes
    # (loongarch's `env.cpucfg`).
    profile = analysis.profile
    model = [split_path(p) for p in (*profile.not_capability_fields, *profile.host_state_fields)]
    read_back = {r.state_path: r for r in reversed(analysis.read_backs)}
    reported: set[str] = set()
    for handoff in analysis.handoffs:
        path = handoff.state_path
        if path in reported or path not in read_back or path in configured:
            continue
        if any(split_path(path)[: len(m)] == m for m in model):
            continue
        members = split_path(path)
        if migrated.overlapping(members):
            continue
        reported.add(path)
        back = read_back[path]
        shown = path.split(".", 1)[1] if "." in path else path
        yield INFO.finding(
            subsection=shown,
            message=(
                f"{shown} is handed to KVM in {handoff.function}() and read back in {back.function}(), "
                "but no VMState field carries it: it is lost on every migration"
            ),
            location=Location(handoff.path, handoff.line, handoff.column),
            related=(Related(Location(back.path, back.line), f"read back from KVM in {back.function}()"),),
            key=(handoff.path, shown),
        )
