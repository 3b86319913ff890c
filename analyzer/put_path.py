"""Where migrated CPU state is handed to KVM on the destination, and read back on the source.

Starting from the profile's put entry points (`kvm_arch_put_registers`), we
follow calls into every function the KVM, helper and accel files define,
carrying the guards of each call site, and record each *handoff*: a member of
the CPU state passed to a call (`kvm_msr_entry_add(cpu, MSR_X, env->x)`) or
copied into something outside the state (`events.x = env->x`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from .facts.model import Assignment, Call, Expression, Function, Guard, TableEntry
from .profile import Profile
from .record import Record

# A call chain deeper than this is not a put path worth following.
_MAX_DEPTH = 12


class Handoff(Record):
    state_path: str  # X86CPU.env.msr_smi_count
    function: str
    path: str
    line: int
    column: int
    how: str  # "passed to kvm_msr_entry_add()", "copied into events.exception_payload"
    guards: tuple[Guard, ...]  # outermost (entry point) first
    chain: tuple[str, ...]  # entry point ... function
    # The expression the state came from (`env->vregs[i][1]`), whose subscripts
    # tell which elements of an array member it hands over; "" when from a
    # table or buffer. Not part of what makes two handoffs the same (find_handoffs).
    source: str = ""


class CallEdge(Record):
    caller: str
    callee: str
    path: str  # the caller's file, where the call is
    line: int
    callee_path: str


def _is_member(path: str, profile: Profile) -> bool:
    """A member of the unit's state, not a whole state object (`X86CPU.env`)."""
    return path.startswith(profile.cpu_type + ".") and path not in profile.state_types.values()


def _passes_on(callee: str, index: int, arity: Mapping[str, int], sinks: dict[str, set[int]]) -> bool:
    """Whether argument `index` of a call to `callee` leaves for KVM (or somewhere we cannot see)."""
    return _always_passes_on(callee, index, arity) or index in sinks[callee]


def _always_passes_on(callee: str, index: int, arity: Mapping[str, int]) -> bool:
    """Whether argument `index` of a call to `callee` leaves whatever `callee` does with it:
    a function not ours, or one of its variadic arguments (`kvm_vcpu_ioctl(cpu, type, ...)`)."""
    return callee not in arity or index >= arity[callee]


def _arities(by_name: Mapping[str, list[Function]]) -> dict[str, int]:
    """For each of our functions, the most parameters a definition of it takes."""
    return {name: max((len(f.parameters) for f in definitions), default=0) for name, definitions in by_name.items()}


def _sink_parameters(
    by_name: Mapping[str, list[Function]], arity: Mapping[str, int], profile: Profile
) -> dict[str, set[int]]:
    """For each function, the parameters whose value leaves it: stored outside
    its locals, or passed on to an external call or to another such parameter.
    `kvm_msr_entry_add(cpu, index, value)` sinks `value`; `freq_within_bounds`
    only compares its arguments and sinks none."""
    sinks: dict[str, set[int]] = {name: set() for name in by_name}
    # What a function stores outside its locals, or passes to a call that leaves
    # for KVM whatever we find, does not depend on what other functions sink:
    # found once. What it passes to one of ours waits on that one's sinks, so a
    # function is looked at again only when a callee's sinks grew.
    waiting: dict[str, list[tuple[str, int, set[int]]]] = {name: [] for name in by_name}  # callee, index, parameters
    callers: dict[str, set[str]] = {}
    for name, definitions in by_name.items():
        for function in definitions:
            carried = _parameters_in_locals(function)
            for assignment in function.assignments:
                if not assignment.target.startswith("local:"):
                    sinks[name].update(p for s in assignment.value.subjects for p in carried.get(s, ()))
            for call in function.calls:
                if profile.is_ignored_call(call.callee):
                    continue
                for index, argument in enumerate(call.arguments):
                    held = {p for s in argument.subjects for p in carried.get(s, ())}
                    if not held:
                        continue
                    if _always_passes_on(call.callee, index, arity):
                        sinks[name] |= held
                    else:
                        waiting[name].append((call.callee, index, held))
                        callers.setdefault(call.callee, set()).add(name)
    pending = set(by_name)
    while pending:
        name = pending.pop()
        found = {p for callee, index, held in waiting[name] if index in sinks[callee] for p in held}
        if not found <= sinks[name]:
            sinks[name] |= found
            pending |= callers.get(name, set())
    return sinks


def _parameters_in_locals(function: Function) -> dict[str, set[int]]:
    """Which parameters (by position) each subject of the function may hold: a
    parameter itself, and a local it is copied into, directly or through
    other locals (`struct kvm_ppc_mmuv3_cfg cfg = { .process_table = proc_tbl }`)."""
    carried: dict[str, set[int]] = {key: {i} for i, key in enumerate(function.parameters)}
    changed = True
    while changed:
        changed = False
        for assignment in function.assignments:
            if not assignment.target.startswith("local:"):
                continue
            held = {p for s in assignment.value.subjects for p in carried.get(s, ())}
            if not held <= carried.setdefault(assignment.target, set()):
                carried[assignment.target] |= held
                changed = True
    return carried


def index_functions(
    functions: Iterable[Function], then: Mapping[str, list[Function]] | None = None
) -> dict[str, list[Function]]:
    """Definitions by name: `functions` first, then those already indexed in `then`
    (a device's own before the hundreds it borrows from its CPU, indexed once)."""
    by_name: dict[str, list[Function]] = {}
    for function in functions:
        by_name.setdefault(function.name, []).append(function)
    for name, definitions in (then or {}).items():
        by_name[name] = by_name[name] + definitions if name in by_name else definitions
    return by_name


def reachable(by_name: Mapping[str, list[Function]], entries: Iterable[str]) -> dict[str, list[Function]]:
    """The part of `by_name` that calls from `entries` reach: all a walk from them
    can visit, and all whose parameters it can ask about (a device unit's entry
    points reach a few of the hundreds of functions it borrows)."""
    reached: dict[str, list[Function]] = {}
    stack = [e for e in entries if e in by_name]
    while stack:
        name = stack.pop()
        if name in reached:
            continue
        reached[name] = by_name[name]
        stack.extend(c.callee for f in by_name[name] for c in f.calls if c.callee in by_name)
    return reached


def _walk(
    by_name: Mapping[str, list[Function]], entries: Iterable[str]
) -> Iterator[tuple[Function, tuple[Guard, ...], tuple[str, ...]]]:
    """Every function reached from `entries`, once per call path, with the guards
    of the calls that lead to it and the chain of names from the entry point."""
    stack: list[tuple[Function, tuple[Guard, ...], tuple[str, ...]]] = [
        (function, (), (entry,)) for entry in reversed(list(entries)) for function in by_name.get(entry, [])
    ]
    while stack:
        function, guards, chain = stack.pop()
        yield function, guards, chain
        below: list[tuple[Function, tuple[Guard, ...], tuple[str, ...]]] = []
        for call in function.calls:
            if call.callee in by_name and call.callee not in chain and len(chain) < _MAX_DEPTH:
                below.extend(
                    (callee, (*guards, *call.guards), (*chain, callee.name)) for callee in by_name[call.callee]
                )
        stack.extend(reversed(below))


def _table_readers(profile: Profile, entries: Iterable[TableEntry]) -> dict[str, list[tuple[str, TableEntry]]]:
    """For each reader of a register table, the state paths its entries name."""
    readers: dict[str, list[tuple[str, TableEntry]]] = {}
    for table in profile.register_tables:
        for entry in entries:
            if entry.macro == table.entry_macro:
                for reader in table.readers:
                    readers.setdefault(reader, []).append((f"{table.state_path}.{entry.member}", entry))
    return readers


class _LocalCopies:
    """Locals holding a copy of CPU state (`uint64_t fpscr = env->fpscr;`,
    `vsr[0] = *fpr;`, and copies of those), judged at the line that uses them:
    the assignments above it, back to the last one that overwrites the whole
    local whenever the use runs (`gpa = env->xen_vcpu_info_gpa;` ...
    `gpa = env->xen_vcpu_time_info_gpa;`; an overwrite under `if` only adds)."""

    def __init__(self, function: Function, profile: Profile) -> None:
        self.profile = profile
        self.assignments: dict[str, list[Assignment]] = {}
        for assignment in function.assignments:
            # `c = &s->cpu[i]` makes an alias, not a copy: the extractor already
            # resolves `c->member` to the member it names.
            if assignment.target.startswith("local:") and not assignment.value.text.startswith("&"):
                self.assignments.setdefault(assignment.target, []).append(assignment)
        for found in self.assignments.values():
            found.sort(key=lambda a: a.line)

    def at(self, key: str, line: int, guards: tuple[Guard, ...], seen: frozenset[str] = frozenset()) -> set[str]:
        """State paths local `key` may hold when read at `line` under `guards`."""
        if key in seen or key not in self.assignments:
            return set()
        above = [a for a in self.assignments[key] if a.line < line]
        name = key.rsplit(":", 1)[-1]
        # Guards compared by `in`, not as sets: hashing a guard walks its whole condition.
        whole = [i for i, a in enumerate(above) if a.target_text == name and all(g in guards for g in a.guards)]
        found: set[str] = set()
        for assignment in above[whole[-1] if whole else 0 :]:
            found.update(f for f in assignment.value.fields if _is_member(f, self.profile))
            for subject in assignment.value.subjects:
                found |= self.at(subject, assignment.line, assignment.guards, seen | {key})
        return found

    def carried(self, expression: Expression, line: int, guards: tuple[Guard, ...]) -> list[str]:
        """State paths an expression at `line` carries: its own members, then the locals' copies."""
        found = list(expression.fields)
        for subject in expression.subjects:
            if subject.startswith("local:"):
                found.extend(sorted(self.at(subject, line, guards)))
        return found


# A handoff as one function makes it, whatever path reached it: the call or
# assignment, the guards inside the function, the state path, how, the source text.
_Site = tuple[Call | Assignment, tuple[Guard, ...], str, str, str]


def _site(
    site: Call | Assignment, guards: tuple[Guard, ...], state_path: str, how: str, source: Expression | None = None
) -> _Site:
    text = source.text if source is not None and state_path in source.fields else ""
    return site, guards, state_path, how, text


def _function_sites(
    function: Function,
    profile: Profile,
    arity: Mapping[str, int],
    readers: Mapping[str, list[tuple[str, TableEntry]]],
    sinks: dict[str, set[int]],
) -> list[_Site]:
    """The handoffs `function` makes, with only its own guards."""
    copies = _LocalCopies(function, profile)
    shared = profile.shared_buffers
    sites: list[_Site] = []
    for call in function.calls:
        for state_path, entry in readers.get(call.callee, ()):
            how = f"read by {call.callee}() from {entry.table}[] ({entry.path}:{entry.line})"
            sites.append(_site(call, call.guards, state_path, how))
        requests = {c for a in call.arguments for c in a.constants} & shared.keys() if shared else ()
        for request in sorted(requests):
            for state_path in shared[request]:
                if _is_member(state_path, profile):  # not another unit's buffer (lent KVM code)
                    how = f"shared with KVM, reread on {request} passed to {call.callee}()"
                    sites.append(_site(call, call.guards, state_path, how))
        if not profile.is_ignored_call(call.callee):
            for index, argument in enumerate(call.arguments):
                if not argument.fields and not any(s.startswith("local:") for s in argument.subjects):
                    continue  # carries no state: `cs`, a constant
                if not _passes_on(call.callee, index, arity, sinks):
                    continue  # a helper of ours that does not pass this argument on
                for state_path in copies.carried(argument, call.line, call.guards):
                    if _is_member(state_path, profile):
                        sites.append(_site(call, call.guards, state_path, f"passed to {call.callee}()", argument))
    for assignment in function.assignments:
        if profile.is_state_key(assignment.target) or assignment.target.startswith("local:"):
            continue
        for state_path in copies.carried(assignment.value, assignment.line, assignment.guards):
            if _is_member(state_path, profile):
                how = f"copied into {assignment.target_text}"
                sites.append(_site(assignment, assignment.guards, state_path, how, assignment.value))
    return sites


def find_handoffs(
    functions: Mapping[str, list[Function]], profile: Profile, table_entries: Iterable[TableEntry] = ()
) -> tuple[list[Handoff], list[CallEdge]]:
    """Return every handoff reachable from the put entry points, and the calls followed.

    A call to a register table's reader (`kvm_cpu_csr_get_u64(cpu, csr_cfg)`
    reading `env + csr_cfg->offset`) hands over every member the table's
    entries name, under the guards of that call. So does a call passing a
    request that makes KVM reread a buffer shared with it
    (`kvm_vcpu_ioctl(cs, KVM_DIRTY_TLB, &dirty_tlb)` and ppc's `env->tlb.tlbm`,
    registered by address at vCPU init): the buffer's contents go to KVM there."""
    by_name = reachable(functions, profile.put_entry_points)
    readers = _table_readers(profile, table_entries)
    arity = _arities(by_name)
    sinks = _sink_parameters(by_name, arity, profile)
    # By all but the source: the first path to make a handoff gives its source.
    handoffs: dict[tuple[object, ...], Handoff] = {}
    edges: set[CallEdge] = set()
    # The walk reaches a function once per call path (the CPU's helpers several
    # times each): what it hands over is found once, only the guards and chain
    # of the path differ. By id: the functions outlive this call.
    made: dict[int, list[_Site]] = {}
    for function, guards, chain in _walk(by_name, profile.put_entry_points):
        if id(function) not in made:
            made[id(function)] = _function_sites(function, profile, arity, readers, sinks)
        for site, site_guards, state_path, how, text in made[id(function)]:
            guarded = (*guards, *site_guards)
            found = (state_path, function.name, function.path, site.line, site.column, how, guarded, chain)
            if found not in handoffs:
                handoffs[found] = Handoff(*found, text)
        for call in function.calls:
            if call.callee in by_name and call.callee not in chain and len(chain) < _MAX_DEPTH:
                for callee in by_name[call.callee]:
                    edges.add(CallEdge(function.name, callee.name, function.path, call.line, callee.path))
    ordered = sorted(handoffs.values(), key=lambda h: (h.path, h.line, h.column, h.state_path, h.chain))
    return ordered, sorted(edges, key=lambda e: (e.path, e.line, e.callee))


class MsrAccess(Record):
    """An MSR put in, or requested from, a KVM_SET_MSRS / KVM_GET_MSRS buffer."""

    msr: str
    function: str
    path: str
    line: int
    column: int
    guards: tuple[Guard, ...]


def find_msr_accesses(
    functions: Mapping[str, list[Function]], profile: Profile, entries: Iterable[str]
) -> list[MsrAccess]:
    """MSR indices given to the profile's MSR-entry calls on the paths from `entries`."""
    found: set[MsrAccess] = set()
    for function, guards, _ in _walk(functions, entries):
        for call in function.calls:
            position = profile.msr_entry_calls.get(call.callee)
            if position is None or position >= len(call.arguments):
                continue
            for msr in call.arguments[position].constants:
                guards_here = (*guards, *call.guards)
                found.add(MsrAccess(msr, function.name, function.path, call.line, call.column, guards_here))
    return sorted(found, key=lambda a: (a.path, a.line, a.msr))


class ReadBack(Record):
    """`env->x = events.x` on the get path: the source reads state back from KVM."""

    state_path: str
    function: str
    path: str
    line: int


def find_read_backs(functions: Mapping[str, list[Function]], profile: Profile) -> list[ReadBack]:
    """State members assigned from KVM data in the functions the get entry points reach."""
    found: set[ReadBack] = set()
    for function, _, _ in _walk(functions, profile.get_entry_points):
        for assignment in function.assignments:
            # A constant (`env->has_error_code = 0`) resets; only data read back counts.
            if profile.is_state_key(assignment.target) and assignment.value.subjects:
                path = assignment.target.removeprefix("field:")
                found.add(ReadBack(path, function.name, function.path, assignment.line))
        for call in function.calls:  # `vfp_set_fpsr(env, fpr)`: a profile setter
            if call.callee in profile.setters and call.arguments and call.arguments[-1].subjects:
                for path in profile.setters[call.callee]:
                    found.add(ReadBack(path, function.name, function.path, call.line))
    return sorted(found, key=lambda r: (r.path, r.line, r.state_path))
