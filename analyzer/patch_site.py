"""Where a post_load check for an unchecked subsection would go, and what it would call."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .audit import Analysis
from .findings import Location
from .verdicts import SubsectionReport, short_name


@dataclass(frozen=True)
class Accessor:
    flag: str  # what the KVM code tests: has_msr_smi_count, kvm_has_vcpu_events()
    name: str  # the function a post_load can call
    exists: bool  # already exported (kvm_has_exception_payload) or to be added
    location: Location | None  # its definition, or where the flag is probed
    # A file-scope flag can be returned by a new accessor; a local (set_ioctl in
    # kvm_arch_set_tsc_khz) or a struct member cannot be, as it stands.
    exportable: bool = True


@dataclass(frozen=True)
class PatchSite:
    description: Location  # the VMStateDescription that gets the post_load
    post_load: str  # the existing post_load to extend, or the one to add
    extends_existing: bool
    accessors: tuple[Accessor, ...]


def propose(analysis: Analysis, report: SubsectionReport) -> PatchSite:
    description = report.description
    keys = sorted(
        {
            key
            for consumer in report.consumers
            if consumer.field in report.guarded_fields
            for guard in consumer.handoff.guards
            for atom in guard.condition.atoms()
            for key in analysis.capabilities.capability_subjects(atom)
        }
    )
    accessors = tuple(_accessor(analysis, key) for key in keys)
    stem = description.symbol.removeprefix("vmstate_")
    return PatchSite(
        description=Location(description.path, description.line, description.column),
        post_load=description.post_load or f"{stem}_post_load",
        extends_existing=description.post_load is not None,
        accessors=accessors,
    )


def _accessor(analysis: Analysis, key: str) -> Accessor:
    flag = short_name(key)
    if key.startswith("call:"):
        defined = _defined(analysis, key.removeprefix("call:"))
        where = Location(*defined) if defined else None
        return Accessor(flag, flag.removesuffix("()"), True, where)
    # An exported function that returns the flag as it is.
    for facts in analysis.facts:
        for function in facts.functions:
            if not function.static and any(r.value.subjects == (key,) for r in function.returns):
                return Accessor(flag, function.name, True, Location(function.path, function.line))
    probes = sorted(analysis.capabilities.probes.get(key, ()))
    if not key.startswith("var:"):
        # A local or a struct member cannot be returned as it stands; an exported
        # function probing the same thing can stand in for it
        # (env->nested_state exists only if kvm_max_nested_state_length() > 0).
        stand_in = _accessor_for(analysis, {p.name for p in probes})
        if stand_in is not None:
            return replace(stand_in, flag=flag)
    where = Location(probes[0].path, probes[0].line) if probes else None
    # has_msr_smi_count -> kvm_has_msr_smi_count; arm's cap_has_inject_serror_esr
    # -> kvm_has_inject_serror_esr; ppc's cap_one_reg -> kvm_has_one_reg.
    member = flag.rsplit(".", 1)[-1].removeprefix("cap_")
    name = f"kvm_{member}" if member.startswith("has_") else f"kvm_has_{member}"
    return Accessor(flag, name, False, where, exportable=key.startswith("var:"))


def _accessor_for(analysis: Analysis, probe_names: set[str]) -> Accessor | None:
    """The most specific exported function whose result comes from one of these probes."""
    candidates = []
    for facts in analysis.facts:
        for function in facts.functions:
            found = {p.name for p in analysis.capabilities.probes.get(f"call:{function.name}", ())}
            if not function.static and found and found & probe_names and not function.parameters:
                candidates.append((len(found), function.name, function))
    if not candidates:
        return None
    _, name, function = min(candidates)
    return Accessor(f"{name}()", name, True, Location(function.path, function.line))


def _defined(analysis: Analysis, name: str) -> tuple[str, int] | None:
    for facts in analysis.facts:
        for function in facts.functions:
            if function.name == name:
                return function.path, function.line
    return None
