"""VG005 msr-capability-mismatch

What it checks
    An MSR that the get path (kvm_arch_get_registers) requests from KVM
    under one set of host capabilities, and that the put path writes back
    under another: a different flag, or none.

Why it matters
    The source reads the MSR when its kernel has one capability; the
    destination writes it back when its kernel has another. Where the two
    disagree, the value migrated is a stale default (read skipped) or is
    never restored (write skipped), depending on the hosts: the same silent
    loss VG001 describes, hidden in the MSR lists rather than in a
    subsection. Both paths should test the same flag.

Example
    /* kvm_get_msrs */
    if (has_msr_foo) {
        kvm_msr_entry_add(cpu, MSR_FOO, 0);
    }
    /* kvm_put_msrs */
    if (has_msr_bar) {                  /* a different probe */
        kvm_msr_entry_add(cpu, MSR_FOO, env->msr_foo);
    }

Fix
    Guard the write and the read with the same capability flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..findings import Finding, Location, Related
from ..put_path import MsrAccess
from .meta import RuleInfo

if TYPE_CHECKING:
    from ..audit import Analysis

INFO = RuleInfo(
    id="VG005",
    name="msr-capability-mismatch",
    severity="warning",
    confidence="medium",
    summary="MSR read back from KVM under one host capability and written back under another",
)


def _probes(analysis: Analysis, access: MsrAccess) -> frozenset[str]:
    capabilities = analysis.capabilities
    return frozenset(
        probe.name
        for guard in access.guards
        for atom in guard.condition.atoms()
        for key in capabilities.capability_subjects(atom)
        for probe in capabilities.probes.get(key, ())
    )


def _shown(probes: frozenset[str]) -> str:
    return " and ".join(sorted(probes)) or "no capability"


def check(analysis: Analysis) -> Iterator[Finding]:
    gets: dict[str, list[MsrAccess]] = {}
    for access in analysis.msr_gets:
        gets.setdefault(access.msr, []).append(access)
    reported: set[str] = set()
    for put in analysis.msr_puts:
        if put.msr in reported or put.msr not in gets:
            continue
        put_probes = {_probes(analysis, p) for p in analysis.msr_puts if p.msr == put.msr}
        get_probes = {_probes(analysis, g) for g in gets[put.msr]}
        if put_probes == get_probes:
            continue
        reported.add(put.msr)
        get = gets[put.msr][0]
        written, read = _probes(analysis, put), _probes(analysis, get)
        yield INFO.finding(
            subsection=put.msr,
            message=(
                f"{put.msr} is read from KVM with {_shown(read)} but written back with {_shown(written)}: "
                "hosts that differ there lose its value"
            ),
            location=Location(put.path, put.line, put.column),
            related=(Related(Location(get.path, get.line), f"requested from KVM in {get.function}()"),),
            key=(put.path, put.msr),
        )
