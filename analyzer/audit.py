"""The audit pipeline: tree -> facts per file -> joined analyses -> reports per subsection -> findings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from . import __version__
from .cache import FactsCache
from .capabilities import Capabilities
from .compat import CompatIndex
from .config import Config
from .facts.batch import Job, extract_many
from .facts.model import Description, Diagnostic, FileFacts, Function
from .findings import Finding, sorted_findings
from .inventory import collect_descriptions, description_files
from .profile import Profile, load_profile
from .put_path import CallEdge, Handoff, MsrAccess, ReadBack, find_handoffs, find_msr_accesses, find_read_backs
from .tree import DirectoryReader, QemuTree, TreeReader, open_tree
from .verdicts import Assessor, SubsectionReport, overlaps, split_path

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Analysis:
    """Everything one run learned about a tree, before rules and reports."""

    tree: QemuTree
    profile: Profile
    facts: tuple[FileFacts, ...]
    capabilities: Capabilities
    handoffs: tuple[Handoff, ...]
    put_calls: tuple[CallEdge, ...]
    read_backs: tuple[ReadBack, ...]
    msr_puts: tuple[MsrAccess, ...]  # MSRs written to KVM on the put path, with their guards
    msr_gets: tuple[MsrAccess, ...]  # MSRs requested from KVM on the get path
    migrated: tuple[str, ...]  # member paths the VMState descriptions carry
    subsections: tuple[SubsectionReport, ...]
    diagnostics: tuple[Diagnostic, ...]
    # Every VMStateDescription of the tree, for the loader-convention rules.
    inventory: tuple[Description, ...] = ()


@dataclass(frozen=True)
class AuditResult:
    analysis: Analysis
    findings: tuple[Finding, ...]
    # Findings found but not reported, by reason: ("accepted in .vmstate-guard.toml", 2).
    hidden: tuple[tuple[str, int], ...] = ()
    tool_version: str = __version__


def analyse(
    root: Path | TreeReader,
    target: str = "i386",
    progress: Progress | None = None,
    config: Config | None = None,
    cache: FactsCache | None = None,
    jobs: int = 1,
) -> Analysis:
    config = config or Config()
    profile = config.extend(load_profile(target))
    reader = DirectoryReader(root) if isinstance(root, Path) else root
    tree = open_tree(reader, profile)
    vmstate_paths = {f.path for f in tree.files if f.role == "vmstate"}
    inventory_files = list(description_files(reader, vmstate_paths))
    # A tree read before, byte for byte, with the same code and settings:
    # its whole analysis comes from the cache.
    key = cache.analysis_key(target, repr(config.capabilities), tree, inventory_files) if cache else None
    if cache and key:
        previous = cache.load_analysis(key)
        if isinstance(previous, Analysis):
            return previous
    # The target's files and every device file with a description, in one batch.
    batch: list[Job] = [(f.path, f.data, f.role) for f in tree.files]
    batch += [(path, data, "inventory") for path, data, _ in inventory_files if data is not None]
    all_facts = extract_many(batch, profile, cache, progress, jobs)
    facts = all_facts[: len(tree.files)]
    roles = {f.path: f.role for f in tree.files}

    def functions_of(*wanted: str) -> list[Function]:
        return [fn for ff in facts if roles[ff.path] in wanted for fn in ff.functions]

    # machine.c is in scope for its post_loads' locals (`len = kvm_max_nested_state_length()`).
    capabilities = Capabilities(functions_of("vmstate", "kvm", "accel"), profile)
    handoffs, put_calls = find_handoffs(functions_of("kvm", "helpers", "accel"), profile)
    read_backs = find_read_backs(functions_of("kvm", "helpers", "accel"), profile)
    msr_puts = find_msr_accesses(functions_of("kvm", "helpers", "accel"), profile, profile.put_entry_points)
    msr_gets = find_msr_accesses(functions_of("kvm", "helpers", "accel"), profile, profile.get_entry_points)
    compat = CompatIndex(
        properties=[p for ff in facts if roles[ff.path] == "properties" for p in ff.properties],
        arrays=[a for ff in facts for a in ff.compat_arrays],
        machines=[m for ff in facts for m in ff.machines],
        functions=functions_of("machines"),
        profile=profile,
    )
    descriptions: dict[str, Description] = {}
    for ff in facts:
        if roles[ff.path] == "vmstate":
            for description in ff.descriptions:
                descriptions.setdefault(description.symbol, description)
    assessor = Assessor(
        descriptions,
        handoffs,
        functions_of("vmstate", "kvm", "helpers", "accel"),
        capabilities,
        compat,
        profile.failure_calls,
        profile.assumed_calls,
    )
    subsections = sorted(assessor.assess_all(), key=lambda r: (r.description.path, r.description.line))
    migrated = _migrated_paths(descriptions, assessor, functions_of("vmstate"))
    inventory, inventory_diagnostics = collect_descriptions(
        inventory_files,
        all_facts[len(tree.files) :],
        {ff.path: ff.descriptions for ff in facts if roles[ff.path] == "vmstate"},
    )
    diagnostics = [d for ff in facts for d in ff.diagnostics] + list(inventory_diagnostics)
    for path in tree.missing:
        diagnostics.append(Diagnostic(path, 0, "not in this tree; the facts it would give are missing"))
    for path, why in tree.skipped:
        diagnostics.append(Diagnostic(path, 0, f"skipped: {why}"))
    analysis = Analysis(
        tree=tree,
        profile=profile,
        facts=tuple(facts),
        capabilities=capabilities,
        handoffs=tuple(handoffs),
        put_calls=tuple(put_calls),
        read_backs=tuple(read_backs),
        msr_puts=tuple(msr_puts),
        msr_gets=tuple(msr_gets),
        migrated=tuple(migrated),
        subsections=tuple(subsections),
        diagnostics=tuple(sorted(set(diagnostics), key=lambda d: (d.path, d.line, d.message))),
        inventory=inventory,
    )
    if cache and key:
        cache.store_analysis(key, analysis)
    return analysis


def _migrated_paths(descriptions: dict[str, Description], assessor: Assessor, functions: list[Function]) -> list[str]:
    """Member paths the CPU descriptions carry (X86CPU.env.pat), with those their
    pre_save/post_load derive from carried ones (env.fpstt from env.fpus_vmstate)."""
    carried = {
        ".".join([*assessor.base(symbol), *split_path(f.path)]) for symbol, d in descriptions.items() for f in d.fields
    }
    callbacks = {c for d in descriptions.values() for c in (d.pre_save, d.post_load) if c}
    by_name = {f.name: f for f in functions}
    reachable: set[str] = set()
    stack = sorted(callbacks)
    while stack:
        name = stack.pop()
        if name in reachable or name not in by_name:
            continue
        reachable.add(name)
        stack.extend(call.callee for call in by_name[name].calls)
    assignments = [a for name in sorted(reachable) for a in by_name[name].assignments if a.target_is_state]

    def is_carried(path: str) -> bool:
        return any(overlaps(split_path(path), split_path(c)) for c in carried)

    changed = True
    while changed:
        changed = False
        for assignment in assignments:
            target = assignment.target.removeprefix("field:")
            sources = [f for f in assignment.value.fields if f.startswith(target.split(".", 1)[0])]
            linked = [target, *sources]
            if any(is_carried(p) for p in linked) and not all(p in carried for p in linked):
                carried.update(linked)
                changed = True
    return sorted(carried)


def audit(
    root: Path | TreeReader,
    target: str = "i386",
    config: Config | None = None,
    progress: Progress | None = None,
    cache: FactsCache | None = None,
    jobs: int = 1,
) -> AuditResult:
    """Run every enabled rule; severities as the config overrides them."""
    from .rules import RULES

    config = config or Config()
    analysis = analyse(root, target, progress, config, cache, jobs)
    findings: list[Finding] = []
    for rule in RULES:
        if config.is_enabled(rule.id):
            severity = config.severity.get(rule.id)
            findings.extend(replace(f, severity=severity) if severity else f for f in rule.check(analysis))
    return AuditResult(analysis, tuple(sorted_findings(findings)))
