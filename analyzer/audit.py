"""The audit pipeline: tree -> facts per file -> joined analyses -> reports per subsection -> findings."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .cache import Deferred, FactsCache, key_of
from .capabilities import Capabilities, keys_read
from .collector import collector_paused
from .compat import CompatIndex
from .config import Config
from .errors import InputError
from .facts.batch import Batch, Job, worker_count
from .facts.extract import extract_file
from .facts.model import Codec, Description, Diagnostic, Expression, FileFacts, Function, Reference, Return
from .findings import Finding, sorted_findings
from .inventory import (
    FileEntry,
    InventoryPart,
    InventoryScan,
    KnownFacts,
    TreeSnapshot,
    candidate_paths,
    inventory_facts,
    inventory_part,
    scan_inventory,
)
from .profile import Profile, available_targets, load_profile, load_units
from .put_path import (
    CallEdge,
    Handoff,
    MsrAccess,
    ReadBack,
    find_handoffs,
    find_msr_accesses,
    find_read_backs,
    index_functions,
    reachable,
)
from .record import Record
from .tree import (
    DirectoryReader,
    QemuTree,
    ReadOnce,
    SourceFile,
    TreeReader,
    UnusableFileError,
    UnusableRequiredFileError,
    open_tree,
)
from .verdicts import Assessor, PathIndex, SubsectionReport, split_path

if TYPE_CHECKING:
    from .prove.run import ProofRun

Progress = Callable[[str, int, int], None]


class TreeWide(Record):
    """What the tree-wide inventory adds to the units' analyses, and what the
    tree-scope rules find in it. Cached by what it is made of (the inventory
    files' content, the units' descriptions and references): a change in a
    unit's code that leaves those alone finds it whole. The inventory files'
    own part is cached apart (InventoryPart), by their content alone, and its
    descriptions and references are unpickled only if something reads them."""

    inventory: InventoryPart
    # The units' descriptions and references, by path (see _tree_wide).
    unit_descriptions: tuple[tuple[str, tuple[Description, ...]], ...]
    unit_references: tuple[tuple[str, tuple[Reference, ...]], ...]
    description_count: int
    description_files: int  # files that define a description
    files: int  # files the tree-wide rules read for descriptions and references
    findings: tuple[Finding, ...]  # the tree-scope rules', with their own severities

    @property
    def descriptions(self) -> tuple[Description, ...]:
        """Every VMStateDescription of the tree, by (path, line); a unit's first where both have one."""
        own = [d for _, found in self.unit_descriptions for d in found]
        return tuple(sorted([*own, *self.inventory.descriptions.get()], key=_position))

    @property
    def references(self) -> tuple[tuple[str, tuple[Reference, ...]], ...]:
        """Where each file names something that may be a description, by path."""
        merged = dict(self.unit_references)
        merged.update(self.inventory.references.get())
        return tuple(sorted(merged.items()))

    @property
    def problems(self) -> tuple[tuple[str, str], ...]:
        return self.inventory.problems

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Notes on descriptions, and on the files the inventory could not read."""
        return self.inventory.diagnostics


def _position(description: Description) -> tuple[str, int]:
    return (description.path, description.line)


NO_TREE_WIDE = TreeWide(InventoryPart(Deferred(()), Deferred(()), (), (), ()), (), (), 0, 0, 0, ())


class UnitDetail(Record):
    """What a unit's analysis found on the way to its verdicts: read by the unit
    rules (when the unit is joined), the HTML report, `graph` and `fix`."""

    facts: tuple[FileFacts, ...]
    capabilities: Capabilities
    handoffs: tuple[Handoff, ...]
    put_calls: tuple[CallEdge, ...]
    read_backs: tuple[ReadBack, ...]
    msr_puts: tuple[MsrAccess, ...]  # MSRs written to KVM on the put path, with their guards
    msr_gets: tuple[MsrAccess, ...]  # MSRs requested from KVM on the get path
    migrated: tuple[str, ...]  # member paths the VMState descriptions carry


class Analysis(Record):
    """Everything one run learned about a tree, before the config and reports."""

    tree: QemuTree
    profile: Profile
    # Deferred: a cached unit's detail is unpickled only if something reads it.
    detail: Deferred[UnitDetail]
    subsections: tuple[SubsectionReport, ...]
    diagnostics: tuple[Diagnostic, ...]
    # What the unit-scope rules find here, with the rules' own severities (the
    # config's apply in audit()): found once, when the unit is joined.
    unit_findings: tuple[Finding, ...]
    # The diagnostics that touch what the analysis uses (a description, a
    # function on a put/get path or a callback, a probe): those worth a reader's time.
    notes: tuple[Diagnostic, ...] = ()
    # The tree's inventory, the same for every unit (empty until the units are joined).
    tree_wide: TreeWide = NO_TREE_WIDE

    @property
    def inventory(self) -> tuple[Description, ...]:
        """Every VMStateDescription of the tree, for the loader-convention rules."""
        return self.tree_wide.descriptions

    @property
    def references(self) -> tuple[tuple[str, tuple[Reference, ...]], ...]:
        """Where each file names something that may be a description."""
        return self.tree_wide.references

    @property
    def facts(self) -> tuple[FileFacts, ...]:
        return self.detail.get().facts

    @property
    def capabilities(self) -> Capabilities:
        return self.detail.get().capabilities

    @property
    def handoffs(self) -> tuple[Handoff, ...]:
        return self.detail.get().handoffs

    @property
    def put_calls(self) -> tuple[CallEdge, ...]:
        return self.detail.get().put_calls

    @property
    def read_backs(self) -> tuple[ReadBack, ...]:
        return self.detail.get().read_backs

    @property
    def msr_puts(self) -> tuple[MsrAccess, ...]:
        return self.detail.get().msr_puts

    @property
    def msr_gets(self) -> tuple[MsrAccess, ...]:
        return self.detail.get().msr_gets

    @property
    def migrated(self) -> tuple[str, ...]:
        return self.detail.get().migrated


class AuditResult(Record):
    analyses: tuple[Analysis, ...]  # one per unit: each target's CPU, then its devices
    findings: tuple[Finding, ...]
    # Findings found but not reported, by reason: ("accepted in .vmstate-guard.toml", 2).
    hidden: tuple[tuple[str, int], ...] = ()
    tool_version: str = __version__
    # What `prove` ran under KVM for these subsections, when it did.
    proof_run: ProofRun | None = None
    # `check`: the tree the findings were compared with; findings are then the new ones.
    base: str | None = None

    @property
    def analysis(self) -> Analysis:
        """The first target's CPU unit: where tree-wide facts (inventory, notes) live."""
        return self.analyses[0]

    @property
    def subsections(self) -> tuple[SubsectionReport, ...]:
        return tuple(report for analysis in self.analyses for report in analysis.subsections)

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        unique = {d for analysis in self.analyses for d in analysis.diagnostics}
        return tuple(sorted(unique, key=_diagnostic_order))

    @property
    def notes(self) -> tuple[Diagnostic, ...]:
        """The diagnostics that touch what some analysis uses (the rest: `--verbose`)."""
        unique = {d for analysis in self.analyses for d in analysis.notes}
        return tuple(sorted(unique, key=_diagnostic_order))

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        return skipped_files(self.analyses)

    def unit_counts(self) -> list[tuple[Analysis, Counter[str], int]]:
        """(unit, subsections per verdict, findings) for each unit analysed."""
        findings = Counter(f.unit for f in self.findings)
        return [(a, Counter(r.verdict for r in a.subsections), findings[a.profile.label]) for a in self.analyses]


def skipped_files(analyses: Sequence[Analysis]) -> tuple[tuple[str, str], ...]:
    """(path, why) of every file some unit found unusable, once each."""
    return tuple(sorted({entry for analysis in analyses for entry in analysis.tree.skipped}))


def present_targets(reader: TreeReader, cache: FactsCache | None = None) -> list[str]:
    """The targets with a profile whose CPU and KVM files this tree has."""
    present = []
    for target in available_targets():
        profile = load_profile(target, cache)
        if all(_has_any(reader, profile.files[role]) for role in profile.layout_roles):
            present.append(target)
    return present


def _has_any(reader: TreeReader, candidates: Sequence[str]) -> bool:
    for candidate in candidates:
        try:
            if reader.read(candidate) is not None:
                return True
        except UnusableFileError:
            return True  # there, but unusable: open_tree says why
    return False


def _open_units(
    reader: TreeReader, targets: Sequence[str], config: Config, cache: FactsCache | None
) -> list[tuple[Profile, QemuTree]]:
    """Each target's CPU unit (which must be there) and the devices this release has."""
    units: list[tuple[Profile, QemuTree]] = []
    for target in targets:
        cpu, *devices = (config.extend(profile) for profile in load_units(target, cache))
        cpu_tree = open_tree(reader, cpu)
        unusable: list[tuple[str, str]] = []
        device_units: list[tuple[Profile, QemuTree]] = []
        for device in devices:
            try:
                device_units.append((device, open_tree(reader, device)))
            except UnusableRequiredFileError as error:
                # There but unusable: said like any skipped file, on the CPU unit.
                unusable.append((error.path, f"{error.problem} ({device.label} not audited)"))
            except InputError:
                continue  # a device this release does not have (or not with KVM)
        if unusable:
            cpu_tree = cpu_tree._replace(skipped=tuple(sorted({*cpu_tree.skipped, *unusable})))
        units += [(cpu, cpu_tree), *device_units]
    return units


def analyse_units(
    root: Path | TreeReader,
    targets: Sequence[str] = (),
    progress: Progress | None = None,
    config: Config | None = None,
    cache: FactsCache | None = None,
    jobs: int = 1,
) -> tuple[Analysis, ...]:
    """One analysis per unit (each target's CPU, then its KVM-backed devices),
    for `targets` or, when empty, every target the tree has."""
    with collector_paused():
        return _analyse_units(root, targets, progress, config or Config(), cache, jobs)


def _analyse_units(
    root: Path | TreeReader,
    targets: Sequence[str],
    progress: Progress | None,
    config: Config,
    cache: FactsCache | None,
    jobs: int,
) -> tuple[Analysis, ...]:
    reader = DirectoryReader(root) if isinstance(root, Path) else root
    # A tree whose files have not changed since a cached run (known by its
    # content id, else by its files' stat data, before reading any) gets that
    # run's analysis back.
    requested = list(dict.fromkeys(targets))
    settings = repr(config.capabilities)
    candidates: list[str] | None = None
    stamps = reader.content_id if cache else None
    if cache and stamps is None:
        candidates = candidate_paths(reader)
        stamps = reader.stamps([*candidates, "VERSION"])
    stamp_key = key_of(("stamp", settings, ",".join(requested), stamps)) if stamps else None
    pointer = cache.load_pointer(stamp_key) if cache and stamp_key else None
    if cache and pointer and (previous := _cached_analyses(cache, pointer, reader.label)):
        return previous
    if not reader.has_directory("target") or not reader.has_directory("include"):
        raise InputError(f"{reader.label}: not a QEMU source tree (no target/ and include/ directories)")
    if candidates is None:
        candidates = candidate_paths(reader)
    unit_reader = ReadOnce(reader)  # the units' files, each read once
    names = requested or present_targets(unit_reader, cache)
    if not names:
        # The most useful message names what a target with machine.c lacks.
        for target in available_targets():
            profile = load_profile(target)
            if _has_any(reader, profile.files.get("vmstate", ())):
                open_tree(reader, profile)
        raise InputError(
            f"{reader.label}: no target with KVM support found (profiles: {', '.join(available_targets())})"
        )
    units = _open_units(unit_reader, names, config, cache)
    profiles = [profile for profile, _ in units]
    # A unit found in the cache is not joined again, nor are its files' facts loaded.
    unit_jobs: list[Job] = [(f.path, f.data, f.role, i) for i, (_, tree) in enumerate(units) for f in tree.files]
    workers = worker_count(jobs, len(unit_jobs) + len(candidates))
    snapshot_key = key_of(("snapshot", reader.root_id)) if cache and reader.root_id else None
    previous_snapshot = cache.load_entry("trees", snapshot_key, TreeSnapshot) if cache and snapshot_key else None
    if previous_snapshot is not None and previous_snapshot.root != reader.root_id:
        previous_snapshot = None  # another tree's entries
    # A tree analysed before has few unit files to extract, if any: they are
    # extracted here, as the units that changed ask for them, and those of a
    # unit found whole are not even looked up in the cache.
    unit_workers = workers if previous_snapshot is None else 1
    # Else on worker processes: the units' files start at once, and are analysed here
    # unit by unit as they come back; the inventory's start once read, on
    # workers that get what CPU the others leave.
    with ExitStack() as running:
        unit_batch = running.enter_context(Batch(unit_jobs, profiles, cache, unit_workers, in_order=len(unit_jobs)))
        vmstate_paths = {f.path for _, tree in units for f in tree.files if f.role == "vmstate"}
        # A file a unit skipped is noted once, by the unit.
        unit_skipped = {path for _, tree in units for path, _ in tree.skipped}
        scan = scan_inventory(reader, candidates, vmstate_paths | unit_skipped, previous_snapshot)
        # A tree read before, file for file, with the same code and settings:
        # its whole analysis comes from the cache.
        inventory_content = scan.content()
        unit_content = [_unit_content(unit) for unit in units] if cache else []
        units_read = [part for content in unit_content for part in content]
        key = key_of(("analysis", settings, *units_read, *inventory_content)) if cache else None
        if cache and key and (previous := _cached_analyses(cache, key, reader.label)):
            if stamp_key:
                cache.store_pointer(stamp_key, key)  # touched but unchanged: next time by stat
            return previous
        to_extract = [p for p in scan.paths if p in scan.data]
        inventory_jobs: list[Job] = [(p, scan.data[p], scan.entries[p].role or "", None) for p in to_extract]
        inventory_batch = running.enter_context(Batch(inventory_jobs, profiles, cache, workers, background=True))
        starts = [sum(len(tree.files) for _, tree in units[:i]) for i in range(len(units))]

        def facts_of(i: int) -> list[FileFacts]:
            return unit_batch.facts(progress, range(starts[i], starts[i] + len(units[i][1].files)))

        results, unit_keys, cached = _analyse_each(units, unit_content, facts_of, settings, cache)
        extracted = {p: inventory_facts(f) for p, f in zip(to_extract, inventory_batch.facts(progress), strict=True)}
    tree_key = key_of(("tree-wide", settings, *inventory_content, _tree_wide_inputs(results))) if cache else None
    tree_wide = cache.load_entry("tree-wide", tree_key, TreeWide) if cache and tree_key else None
    if tree_wide is None:
        part = _inventory_part(reader, scan, extracted, previous_snapshot, profiles[0], cache)
        tree_wide = _tree_wide(results, part)
        if cache and tree_key:
            cache.store_entry("tree-wide", tree_key, tree_wide)
    result = _join(results, tree_wide)
    if cache and key and tree_key:
        # Stored in parts: a change in one unit's files writes that unit again, not the tree.
        for unit_key, hit, fresh in zip(unit_keys, cached, results, strict=True):
            if unit_key and hit is None:
                cache.store_entry("units", unit_key, fresh)
        cache.store_entry("analyses", key, StoredAnalysis(tuple(k for k in unit_keys if k), tree_key))
        if stamp_key:
            cache.store_pointer(stamp_key, key)
        if snapshot_key and reader.root_id:
            snapshot = _next_snapshot(reader, previous_snapshot, scan.entries, extracted)
            if snapshot is not previous_snapshot:
                cache.store_entry("trees", snapshot_key, snapshot)
    return result


class StoredAnalysis(Record):
    """A whole analysis as cached: the keys of its units' entries and of its tree-wide part."""

    units: tuple[str, ...]
    tree_wide: str


def _inventory_part(
    reader: TreeReader,
    scan: InventoryScan,
    extracted: dict[str, FileFacts],
    previous: TreeSnapshot | None,
    profile: Profile,
    cache: FactsCache | None,
) -> InventoryPart:
    """The inventory files' part: from the cache by their content, else from
    their inventory facts, this run's (`extracted`) or the `previous` snapshot's.
    A file whose facts neither has (a snapshot damaged or cut short) is read and
    extracted here, and its facts added to `extracted` for the next snapshot."""
    key = key_of(("inventory", *scan.content())) if cache else None
    found = cache.load_entry("inventory", key, InventoryPart) if cache and key else None
    if found is not None:
        return found
    known: KnownFacts = previous.facts.get() if previous is not None else {}
    facts: dict[str, FileFacts] = {}
    for path in scan.paths:
        entry = scan.entries[path]
        if entry.problem is not None:
            continue
        if path not in extracted:
            blob, stored = known.get(path, ("", None))
            if stored is not None and blob == entry.blob:
                facts[path] = stored.get()
                continue
            extracted[path] = inventory_facts(extract_file(path, reader.read(path) or b"", profile, entry.role))
        facts[path] = extracted[path]
    found = inventory_part(scan.paths, scan.entries, facts)
    if cache and key:
        cache.store_entry("inventory", key, found)
    return found


def _tree_wide(results: Sequence[UnitResult], part: InventoryPart) -> TreeWide:
    """The tree-wide part from the units' descriptions and references and the
    inventory files' `part`, with the tree-scope rules' findings."""
    from .rules import RULES

    # By path: a unit's file read by another unit too gives what the last one found.
    own = {path: found for result in results for path, found in result.descriptions}
    references = {path: found for result in results for path, found in result.references}
    found = TreeWide(part, tuple(own.items()), tuple(references.items()), 0, 0, 0, ())
    descriptions = found.descriptions
    defining = {d.path for d in descriptions}
    found = found._replace(
        description_count=len(descriptions),
        description_files=len(defining),
        files=len(defining | set(part.readable)),
    )
    seen = results[0].analysis._replace(tree_wide=found)
    findings = tuple(f._replace(unit="") for rule in RULES if rule.scope == "tree" for f in rule.check(seen))
    return found._replace(findings=findings)


def _tree_wide_inputs(results: Sequence[UnitResult]) -> str:
    """What the tree-wide part reads of the units, as text for its key (repr:
    the same values give the same text however the objects are shared)."""
    return repr([(result.descriptions, result.references) for result in results])


def _join(results: Sequence[UnitResult], tree_wide: TreeWide) -> tuple[Analysis, ...]:
    """The units' analyses, each with the tree's inventory; the first also with
    the tree-wide notes and the files the inventory could not read."""
    analyses = [result.analysis._replace(tree_wide=tree_wide) for result in results]
    first = analyses[0]
    # The inventory keeps only notes on descriptions and on files it could not read.
    analyses[0] = first._replace(
        # Warned about like the units' skipped files.
        tree=first.tree._replace(skipped=tuple(sorted({*first.tree.skipped, *tree_wide.problems}))),
        diagnostics=tuple(sorted({*first.diagnostics, *tree_wide.diagnostics}, key=_diagnostic_order)),
        notes=tuple(sorted({*first.notes, *tree_wide.diagnostics}, key=_diagnostic_order)),
    )
    return tuple(analyses)


class UnitResult(Record):
    """One unit's analysis before the tree-wide inventory joins it, with what its
    files give the inventory: descriptions and references, by path."""

    analysis: Analysis
    descriptions: tuple[tuple[str, tuple[Description, ...]], ...]
    references: tuple[tuple[str, tuple[Reference, ...]], ...]
    # A CPU's: a key over what it lends its devices (see _lent_key); "" for a device.
    lent_key: str = ""


def _unit_content(unit: tuple[Profile, QemuTree]) -> list[str]:
    """What a unit's analysis reads of the tree, for its keys."""
    profile, tree = unit
    parts = [profile.label, tree.version or "", *tree.missing]
    parts += [f"{path}:{why}" for path, why in tree.skipped]
    parts += [f"{f.path}:{f.role}:{hashlib.sha256(f.data).hexdigest()}" for f in tree.files]
    return parts


def _next_snapshot(
    reader: TreeReader, previous: TreeSnapshot | None, entries: dict[str, FileEntry], extracted: dict[str, FileFacts]
) -> TreeSnapshot:
    """The snapshot to store: this run's entries and the inventory facts it
    `extracted`, keeping those of files it did not scan (another target's
    machine.c) and, read from a revision, the stat data of files whose bytes
    the snapshot's directory run saw. `previous` itself when this run learned
    nothing new (it is then not written again)."""
    merged = dict(previous.entries) if previous is not None else {}
    changed = False
    for path, entry in entries.items():
        prior = merged.get(path)
        if entry.stat is None and prior is not None and prior.blob == entry.blob and prior.stat is not None:
            entry = entry._replace(stat=prior.stat)
        changed = changed or (entry is not prior and entry != prior)  # most are the snapshot's own
        merged[path] = entry
    facts: Deferred[KnownFacts] = previous.facts if previous is not None else Deferred({})
    if extracted:
        known = dict(facts.get())
        known.update((path, (entries[path].blob or "", Deferred(found))) for path, found in extracted.items())
        facts, changed = Deferred(known), True
    return TreeSnapshot(reader.root_id or "", merged, facts) if changed or previous is None else previous


def _cached_analyses(cache: FactsCache, key: str, label: str) -> tuple[Analysis, ...] | None:
    """The analyses stored under `key`, named as the tree being read now (keys are
    by content: another revision, or the same one by another name, may have stored them)."""
    stored = cache.load_entry("analyses", key, StoredAnalysis)
    if stored is None:
        return None
    tree_wide = cache.load_entry("tree-wide", stored.tree_wide, TreeWide)
    if tree_wide is None:
        return None  # damaged or gone: the run that joins the tree stores it again
    results = [cache.load_entry("units", unit, UnitResult) for unit in stored.units]
    if not results or None in results:
        return None  # each unit missing is stored again by the run that joins it
    named = [r._replace(analysis=r.analysis._replace(tree=r.analysis.tree._replace(label=label))) for r in results if r]
    return _join(named, tree_wide)


# The roles of a CPU unit's files whose functions its devices' KVM code calls.
_LENT_ROLES = ("kvm", "helpers", "accel")


class Paths(Record):
    """A unit's put and get paths: its handoffs and the calls they take, its
    read-backs, the MSRs it writes and those it requests."""

    handoffs: tuple[Handoff, ...]
    put_calls: tuple[CallEdge, ...]
    read_backs: tuple[ReadBack, ...]
    msr_puts: tuple[MsrAccess, ...]
    msr_gets: tuple[MsrAccess, ...]


class KvmSide(Record):
    """What a CPU unit's KVM code (its kvm, helpers and accel files) gives its
    join by itself: the capability solution over it and the keys its steps may
    read, and its paths. Cached by those files' content, so that a change in
    the CPU's VMState code solves only that code (when it writes nothing the
    KVM code reads) and walks no path again (when none reaches it)."""

    capabilities: Capabilities
    reads: frozenset[str]
    paths: Paths


def _kvm_side(profile: Profile, tree: QemuTree, facts: list[FileFacts]) -> KvmSide:
    functions = _functions_in(tree, facts, *_LENT_ROLES)
    capabilities = Capabilities(functions, profile, None, _required(profile, tree, facts))
    return KvmSide(capabilities, keys_read(functions), _paths(profile, tree, facts, index_functions(functions)))


def _reaches_vmstate(profile: Profile, tree: QemuTree, by_name: Mapping[str, list[Function]]) -> bool:
    """Whether a put or get path can reach a function of the unit's VMState files."""
    vmstate = {f.path for f in tree.files if f.role == "vmstate"}
    entry_points = [*profile.put_entry_points, *profile.get_entry_points]
    return any(f.path in vmstate for found in reachable(by_name, entry_points).values() for f in found)


def _required(profile: Profile, tree: QemuTree, facts: list[FileFacts]) -> list[str]:
    """Capabilities kvm_init() refuses to start without: asking tells nothing about the host."""
    required = [r.name for ff in _facts_in(tree, facts, "kvm", "accel") for r in ff.required_capabilities]
    return required + list(profile.required_capabilities)


def _paths(profile: Profile, tree: QemuTree, facts: list[FileFacts], by_name: Mapping[str, list[Function]]) -> Paths:
    """The put and get paths through the functions `by_name`."""
    table_entries = [e for ff in _facts_in(tree, facts, "kvm") for e in ff.table_entries]
    handoffs, put_calls = find_handoffs(by_name, profile, table_entries)
    return Paths(
        tuple(handoffs),
        tuple(put_calls),
        tuple(find_read_backs(by_name, profile)),
        tuple(find_msr_accesses(by_name, profile, profile.put_entry_points)),
        tuple(find_msr_accesses(by_name, profile, profile.get_entry_points)),
    )


def _analyse_each(
    units: list[tuple[Profile, QemuTree]],
    unit_content: list[list[str]],
    facts_of: Callable[[int], list[FileFacts]],
    settings: str,
    cache: FactsCache | None,
) -> tuple[list[UnitResult], list[str | None], list[UnitResult | None]]:
    """Each unit's analysis, from the facts of its files (`facts_of(index)`) or
    the cache (`unit_content`: what each reads, see _unit_content); with each
    unit's key and what the cache had under it.

    A unit's key covers its files; a device's also what its CPU lends it (a
    device's KVM code calls into its target CPU's, kvm_has_adjust_clock_stable():
    it borrows those functions and extends their capability solution), so a
    change in the CPU's VMState code alone does not join its devices again."""
    results: list[UnitResult] = []
    keys: list[str | None] = []
    hits: list[UnitResult | None] = []
    lent: dict[str, list[Function]] | None = None
    cpu_result: UnitResult | None = None
    cpu = 0
    for index, (profile, tree) in enumerate(units):
        is_cpu = profile.unit == "cpu"
        if is_cpu:
            cpu, lent = index, None
        lender = "" if is_cpu or cpu_result is None else cpu_result.lent_key
        key = key_of(("unit", settings, lender, *unit_content[index])) if cache else None
        hit = cache.load_entry("units", key, UnitResult) if cache and key else None
        keys.append(key)
        hits.append(hit)
        if hit is not None:
            result = hit._replace(analysis=hit.analysis._replace(tree=tree))
        else:
            facts = facts_of(index)
            if not is_cpu and lent is None:
                lent = index_functions(_functions_in(units[cpu][1], facts_of(cpu), *_LENT_ROLES))
            base = None if is_cpu or cpu_result is None else cpu_result.analysis.capabilities
            kvm_side = _cached_kvm_side(profile, tree, facts, settings, cache) if is_cpu and cache else None
            analysis = _analyse_unit(profile, tree, facts, {} if is_cpu else lent or {}, base, kvm_side)
            if is_cpu:
                lent = index_functions(_functions_in(tree, facts, *_LENT_ROLES))
            result = UnitResult(
                analysis,
                tuple((f.path, f.descriptions) for f in facts if f.descriptions),
                tuple((f.path, f.references) for f in facts if f.references),
                _lent_key((profile, tree), analysis.capabilities) if is_cpu else "",
            )
        if is_cpu:
            cpu_result = result
        results.append(result)
    return results, keys, hits


def _cached_kvm_side(
    profile: Profile, tree: QemuTree, facts: list[FileFacts], settings: str, cache: FactsCache
) -> KvmSide | None:
    """The CPU unit's KvmSide, from the cache when its KVM files are as they were;
    None when a file is read both as VMState and as KVM code (it is then no side)."""
    lent = [f for f in tree.files if f.role in _LENT_ROLES]
    if {f.path for f in lent} & {f.path for f in tree.files if f.role == "vmstate"}:
        return None
    key = key_of(("kvm side", settings, profile.label, *_lent_content(lent)))
    found = cache.load_entry("kvm-side", key, KvmSide)
    if found is None:
        found = _kvm_side(profile, tree, facts)
        cache.store_entry("kvm-side", key, found)
    return found


def _lent_content(lent: list[SourceFile]) -> list[str]:
    return [f"{f.path}:{f.role}:{hashlib.sha256(f.data).hexdigest()}" for f in lent]


def _lent_key(unit: tuple[Profile, QemuTree], capabilities: Capabilities) -> str:
    """A key over what a CPU unit lends its devices: its KVM files, and its
    capability solution as their code can read it (not the locals of its
    VMState callbacks, which only those functions read)."""
    lent = [f for f in unit[1].files if f.role in _LENT_ROLES]
    return key_of(("lent", *_lent_content(lent), capabilities.fingerprint({f.path for f in lent})))


def analyse(
    root: Path | TreeReader,
    target: str = "i386",
    progress: Progress | None = None,
    config: Config | None = None,
    cache: FactsCache | None = None,
    jobs: int = 1,
) -> Analysis:
    """The analysis of one target's CPU (what `fix` and `graph` work on)."""
    return analyse_units(root, (target,), progress, config, cache, jobs)[0]


def _facts_in(tree: QemuTree, facts: list[FileFacts], *roles: str) -> list[FileFacts]:
    """The facts of the unit's files that have one of `roles`; `facts` follow `tree.files`,
    so a file read in two roles counts in each."""
    return [ff for source, ff in zip(tree.files, facts, strict=True) if source.role in roles]


def _functions_in(tree: QemuTree, facts: list[FileFacts], *roles: str) -> list[Function]:
    return [fn for ff in _facts_in(tree, facts, *roles) for fn in ff.functions]


def _diagnostic_order(diagnostic: Diagnostic) -> tuple[str, int, str]:
    return (diagnostic.path, diagnostic.line, diagnostic.message)


def _analyse_unit(
    profile: Profile,
    tree: QemuTree,
    facts: list[FileFacts],
    lent: Mapping[str, list[Function]],
    base: Capabilities | None,
    kvm_side: KvmSide | None = None,
) -> Analysis:
    """One unit's analysis; a device's also reads the `lent` KVM functions of its
    target CPU, whose capability solution `base` it extends; a CPU's may start
    from what its KVM code gives by itself (`kvm_side`)."""

    def functions_of(*roles: str) -> list[Function]:
        return _functions_in(tree, facts, *roles)

    # A put path may start in the description file (hw/ppc/spapr.c's
    # spapr_post_load hands patb_entry to KVM), so its callbacks are walkable too.
    kvm_functions = index_functions(functions_of("kvm", "helpers", "accel", "vmstate"), then=lent)
    # machine.c is in scope for its post_loads' locals (`len = kvm_max_nested_state_length()`).
    # A device extends its CPU's solution rather than solving that code again.
    required = _required(profile, tree, facts)
    capabilities = None
    if kvm_side is not None:
        capabilities = kvm_side.capabilities.extended(functions_of("vmstate"), required, kvm_side.reads)
    if capabilities is None:
        capabilities = Capabilities(functions_of("vmstate", "kvm", "helpers", "accel"), profile, base, required)
    paths = kvm_side.paths if kvm_side and not _reaches_vmstate(profile, tree, kvm_functions) else None
    handoffs, put_calls, read_backs, msr_puts, msr_gets = paths or _paths(profile, tree, facts, kvm_functions)
    compat = CompatIndex(
        properties=[p for ff in _facts_in(tree, facts, "properties") for p in ff.properties],
        arrays=[a for ff in facts for a in ff.compat_arrays],
        machines=[m for ff in facts for m in ff.machines],
        functions=functions_of("machines"),
        profile=profile,
    )
    descriptions: dict[str, Description] = {}
    for ff in _facts_in(tree, facts, "vmstate"):
        for description in ff.descriptions:
            descriptions.setdefault(description.symbol, description)
    codecs = {c.symbol: c for ff in _facts_in(tree, facts, "vmstate") for c in ff.codecs}
    codec_state = _codec_state(descriptions, codecs, functions_of("vmstate"), profile)
    assessor = Assessor(
        descriptions,
        handoffs,
        index_functions(functions_of("vmstate", "kvm", "helpers", "accel"), then=lent),
        capabilities,
        compat,
        profile.failure_calls,
        profile.assumed_calls,
        codec_state,
        profile.cpu_model,
        _model_check_at(profile, functions_of("cpu_model")),
    )
    subsections = sorted(assessor.assess_all(), key=lambda r: (r.description.path, r.description.line))
    migrated = _migrated_paths(descriptions, assessor, functions_of("vmstate"), codec_state, profile)
    diagnostics = [d for ff in facts for d in ff.diagnostics]
    diagnostics.extend(
        Diagnostic(
            d.path,
            f.line,
            f"{d.symbol}: hand-written field {f.path} (.info = &{f.codec}): its get function writes "
            "no state seen here, so what it carries is not traced",
        )
        for d in descriptions.values()
        for f in d.fields
        if f.codec and not codec_state.get(f.codec)
    )
    for path in tree.missing:
        diagnostics.append(Diagnostic(path, 0, "not in this tree; the facts it would give are missing"))
    for path, why in tree.skipped:
        diagnostics.append(Diagnostic(path, 0, f"skipped: {why}"))
    used = _used_lines(profile, kvm_functions, assessor.functions, descriptions.values(), capabilities)
    detail = UnitDetail(
        facts=tuple(_summary(ff) for ff in facts),
        capabilities=capabilities,
        handoffs=tuple(handoffs),
        put_calls=tuple(put_calls),
        read_backs=tuple(read_backs),
        msr_puts=tuple(msr_puts),
        msr_gets=tuple(msr_gets),
        migrated=tuple(migrated),
    )
    analysis = Analysis(
        tree=tree,
        profile=profile,
        detail=Deferred(detail),
        subsections=tuple(subsections),
        diagnostics=tuple(sorted(set(diagnostics), key=_diagnostic_order)),
        unit_findings=(),
        notes=tuple(sorted({d for d in diagnostics if _touches(d, used)}, key=_diagnostic_order)),
    )
    return analysis._replace(unit_findings=_unit_findings(analysis))


def _unit_findings(analysis: Analysis) -> tuple[Finding, ...]:
    """Every unit-scope rule's findings, rule by rule. These rules read only
    the unit's own analysis, which the tree-wide inventory does not change."""
    from .rules import RULES

    label = analysis.profile.label
    return tuple(f._replace(unit=label) for rule in RULES if rule.scope == "unit" for f in rule.check(analysis))


Spans = dict[str, list[tuple[int, int]]]


def _used_lines(
    profile: Profile,
    kvm_functions: Mapping[str, list[Function]],
    callback_functions: Mapping[str, list[Function]],
    descriptions: Iterable[Description],
    capabilities: Capabilities,
) -> Spans:
    """The line spans, by file, of what the unit's analysis reads: its descriptions,
    their callbacks and what those call, the functions on the put and get paths,
    and those where a flag is probed."""
    descriptions = list(descriptions)
    spans: Spans = {}
    for d in descriptions:
        spans.setdefault(d.path, []).append((d.line, max(d.end_line, d.line)))
    paths = reachable(kvm_functions, [*profile.put_entry_points, *profile.get_entry_points])
    callbacks = {c for d in descriptions for c in (d.needed, d.post_load, d.pre_load, d.pre_save) if c}
    paths.update(reachable(callback_functions, callbacks))
    probes = {p for found in capabilities.probes.values() for p in found}
    probing = {(p.path, p.function) for p in probes}
    used = [f for definitions in paths.values() for f in definitions]
    used += [f for definitions in kvm_functions.values() for f in definitions if (f.path, f.name) in probing]
    for f in used:
        spans.setdefault(f.path, []).append((f.line, f.end_line))
    for probe in probes:
        spans.setdefault(probe.path, []).append((probe.line, probe.line))
    return spans


def _touches(diagnostic: Diagnostic, used: Spans) -> bool:
    """Whether a diagnostic bears on something in `used` (line 0: a whole file missing or skipped)."""
    if diagnostic.line == 0 or diagnostic.whole_file:
        return True
    return any(first <= diagnostic.line <= last for first, last in used.get(diagnostic.path, ()))


def _model_check_at(profile: Profile, functions: list[Function]) -> tuple[str, int] | None:
    """Where the profile's CPU-model check function is defined, if its files have it."""
    if profile.cpu_model is None:
        return None
    found = sorted((f.path, f.line) for f in functions if f.name == profile.cpu_model.check_function)
    return found[0] if found else None


def _reachable(roots: Iterable[str], functions: list[Function]) -> list[Function]:
    """The functions `roots` name and those they call, among `functions`."""
    return [f for definitions in reachable(index_functions(functions), roots).values() for f in definitions]


def _codec_state(
    descriptions: dict[str, Description], codecs: dict[str, Codec], functions: list[Function], profile: Profile
) -> dict[str, tuple[str, ...]]:
    """For each VMStateInfo a hand-written field uses, the state its get function
    writes (`get_power()`: `cpu->power_state = ...` -> ARMCPU.power_state), itself
    or through a profile setter (`vfp_set_fpsr(env, val)`)."""
    used = {f.codec for d in descriptions.values() for f in d.fields if f.codec}
    state: dict[str, tuple[str, ...]] = {}
    for symbol in sorted(used & codecs.keys()):
        get = codecs[symbol].get
        reached = _reachable([get] if get else [], functions)
        written = {
            a.target.removeprefix("field:") for f in reached for a in f.assignments if profile.is_state_key(a.target)
        }
        written.update(p for f in reached for c in f.calls for p in profile.setters.get(c.callee, ()))
        state[symbol] = tuple(sorted(written))
    return state


def _summary(facts: FileFacts) -> FileFacts:
    """What rules and patch sites read of a file's facts once the analysis is done.

    A function keeps its signature and its returns' subjects, not its calls,
    assignments and guards: those are the bulk of the facts, and a whole
    analysis is cached and read back on every unchanged re-run."""

    # Built directly, not by dataclasses.replace(), which costs twice as much
    # on a CPU unit's hundreds of functions and returns.
    def stripped(function: Function) -> Function:
        returns = tuple(
            Return(Expression(r.value.text, r.value.subjects), (), r.line)
            if r.guards or r.value.fields or r.value.calls or r.value.constants
            else r
            for r in function.returns
        )
        return Function(
            name=function.name,
            path=function.path,
            line=function.line,
            end_line=function.end_line,
            static=function.static,
            condition=function.condition,
            parameters=function.parameters,
            returns=returns,
        )

    return facts._replace(functions=tuple(stripped(f) for f in facts.functions), references=())


def _migrated_paths(
    descriptions: dict[str, Description],
    assessor: Assessor,
    functions: list[Function],
    codec_state: dict[str, tuple[str, ...]],
    profile: Profile,
) -> list[str]:
    """Member paths the CPU descriptions carry (X86CPU.env.pat), with those their
    pre_save/post_load derive from carried ones (env.fpstt from env.fpus_vmstate)
    and those hand-written fields' get functions write."""
    carried = {
        ".".join([*assessor.base(symbol), *split_path(f.path)])
        for symbol, d in descriptions.items()
        for f in d.fields
        if not f.codec and f.path  # VMSTATE_WITH_TMP: its temporary's own fields count
    }
    carried.update(path for paths in codec_state.values() for path in paths)
    callbacks = {c for d in descriptions.values() for c in (d.pre_save, d.post_load) if c}
    assignments = [a for f in _reachable(callbacks, functions) for a in f.assignments if profile.is_state_key(a.target)]

    index = PathIndex(split_path(c) for c in carried)  # asked again for every assignment, every round

    changed = True
    while changed:
        changed = False
        for assignment in assignments:
            target = assignment.target.removeprefix("field:")
            sources = [f for f in assignment.value.fields if f.startswith(target.split(".", 1)[0])]
            linked = [target, *sources]
            if any(index.overlapping(split_path(p)) for p in linked) and not all(p in carried for p in linked):
                for path in linked:
                    if path not in carried:
                        carried.add(path)
                        index.add(split_path(path))
                changed = True
    return sorted(carried)


def audit(
    root: Path | TreeReader,
    targets: Sequence[str] | str = (),
    config: Config | None = None,
    progress: Progress | None = None,
    cache: FactsCache | None = None,
    jobs: int = 1,
) -> AuditResult:
    """Run every enabled rule on every unit of `targets` (default: those the tree has);
    severities as the config overrides them."""
    config = config or Config()
    analyses = analyse_units(root, (targets,) if isinstance(targets, str) else targets, progress, config, cache, jobs)
    with collector_paused():  # the rules build findings over a heap of facts with no cycles
        return AuditResult(analyses, tuple(sorted_findings(_findings(analyses, config))))


def audit_findings(
    reader: TreeReader,
    targets: Sequence[str] = (),
    config: Config | None = None,
    progress: Progress | None = None,
    cache: FactsCache | None = None,
    jobs: int = 1,
) -> tuple[Finding, ...]:
    """What audit() finds, without the analyses (all `check` needs of its base).
    A tree known by its content id (a git revision) is cached by it with the
    rules' settings: an unchanged base costs one small read, no listing."""
    config = config or Config()
    rules = (sorted(config.disabled), sorted(config.severity.items()), repr(config.capabilities))
    content = reader.content_id
    key = key_of(("findings", content, ",".join(targets), repr(rules))) if content else None
    if cache and key and (found := cache.load_entry("findings", key, tuple)) is not None:
        return found
    findings = audit(reader, targets, config, progress, cache, jobs).findings
    if cache and key:
        cache.store_entry("findings", key, findings)
    return findings


def _findings(analyses: tuple[Analysis, ...], config: Config) -> list[Finding]:
    from .rules import RULES

    findings: list[Finding] = []
    for rule in RULES:
        if not config.is_enabled(rule.id):
            continue
        severity = config.severity.get(rule.id)
        # Each ran when what it reads was joined: the whole tree's descriptions, or a unit.
        if rule.scope == "tree":
            found = [f for f in analyses[0].tree_wide.findings if f.rule == rule.id]
        else:
            found = [f for analysis in analyses for f in analysis.unit_findings if f.rule == rule.id]
        findings += [f._replace(severity=severity or f.severity) for f in found]
    return findings
