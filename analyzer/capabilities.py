"""Which symbols carry a host-kernel capability, and where it was probed.

A flag is a host capability because of where its value comes from, not
because of its `has_` prefix: we follow assignments from the probes the
profile names (`kvm_check_extension(s, KVM_CAP_*)`, query ioctls such as
KVM_GET_MSR_INDEX_LIST and the switch over their result, supported CPUID)
through locals, statics, struct members and accessor return values, until
nothing changes. After the first round, only the assignments and returns that
read a key changed since are evaluated again: the others would find the same.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence

from .facts.model import Assignment, Call, Expression, Function, Guard
from .profile import Profile
from .record import Record


class Probe(Record):
    """Where the host kernel was asked: `KVM_CAP_NESTED_STATE`, `MSR_SMI_COUNT`."""

    name: str
    kind: str  # kvm-cap, msr-index-list, cpuid, ioctl
    path: str
    line: int
    function: str


_NONE: frozenset[Probe] = frozenset()


def _probe_order(probe: Probe) -> tuple[str, str, str, int, str]:
    """The order Probe's own comparisons give, as a key (much cheaper to sort by)."""
    return probe.name, probe.kind, probe.path, probe.line, probe.function


def _value_at(values: dict[int, frozenset[Probe]], line: int) -> frozenset[Probe]:
    """Probes of the last assignment to a local above `line` (branches and loops
    ignored), from its probes by the line assigned at."""
    earlier = [assigned for assigned in values if assigned < line]
    return values[max(earlier)] if earlier else _NONE


class _Solving:
    """What `Capabilities._solve` keeps while it runs: the steps (an assignment,
    or a function's returns), which step reads which key, and which to evaluate
    again and when: a step that reads a key some step changed, later in the same
    round, or in the next one when it came before it."""

    def __init__(self, steps: list[tuple[Function, Assignment | None]], is_excluded: Callable[[str], bool]) -> None:
        self.steps = steps  # in order; None for a function's returns
        self.step = -1  # the one being evaluated
        self.excluded = functools.cache(is_excluded)
        # A guard's condition by the ids of the guard and its function (the
        # assignments of a block share their guards): the probes it makes
        # itself, the keys it reads.
        self.conditions: dict[tuple[int, int], tuple[frozenset[Probe], tuple[str, ...]]] = {}
        # key -> (step, line it is read at; 0: anywhere)
        self.readers: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
        self._first = True
        self._pending: list[int] = []  # this round's, a heap
        self._queued: set[int] = set()
        self._later: set[int] = set()

    def touch(self, key: str, low: int, high: int | None = None) -> None:
        """The step being evaluated changed `key` as read at lines `low` to `high`."""
        for reader, line in self.readers.get(key, ()):
            if line < low or (high is not None and line > high):
                continue
            if reader <= self.step:
                self._later.add(reader)
            elif reader not in self._queued:
                self._queued.add(reader)
                heapq.heappush(self._pending, reader)

    def next_round(self) -> Iterator[tuple[Function, Assignment | None]]:
        """The steps to evaluate in the next round, in order, as they are queued:
        the first time, every one."""
        if self._first:
            self._first = False
            for index, step in enumerate(self.steps):
                self.step = index
                yield step
            return
        self._pending, self._queued, self._later = sorted(self._later), set(self._later), set()
        while self._pending:
            self.step = heapq.heappop(self._pending)
            yield self.steps[self.step]


class Capabilities:
    """Probes reaching each symbol key, computed over the KVM and accel code."""

    def __init__(
        self,
        functions: Iterable[Function],
        profile: Profile,
        base: Capabilities | None = None,
        required: Iterable[str] = (),
    ) -> None:
        """`base`: a solution to extend (a device's target CPU, whose KVM code the
        device's calls into); only `functions` are then solved again.
        `required`: capabilities kvm_init() refuses to start without
        (`KVM_CAP_XSAVE` in QEMU 10.0's kvm_arch_required_capabilities[]):
        asking for one tells nothing about the host."""
        self.profile = profile
        self._probe_calls = profile.extension_calls | profile.cpuid_calls | profile.ioctl_calls  # for `_direct`
        self.required: frozenset[str] = frozenset(required) | (base.required if base else frozenset())
        self.probes: dict[str, frozenset[Probe]] = dict(base.probes) if base else {}
        # Locals are reused (`r = kvm_check_extension(...)`, later
        # `r = hyperv_handle_properties(...)`): keep each assignment's probes by
        # line, so a condition sees the value most recently assigned above it.
        self._local_values: dict[str, dict[int, frozenset[Probe]]] = (
            {key: dict(values) for key, values in base._local_values.items()} if base else {}
        )
        self._solve(tuple(functions))

    def fingerprint(self, read_locals_of: Collection[str]) -> str:
        """A digest of this solution as code that extends it can see it: every
        key's probes, and where a local is assigned, but only the locals of
        functions in the files `read_locals_of` (no other function reads a local)."""

        prefixes = tuple(f"local:{path}:" for path in read_locals_of)

        def seen(key: str) -> bool:
            return not key.startswith("local:") or key.startswith(prefixes)

        # The text digested is repr((key, sorted(probes))) for each key, and
        # repr((key, [(line, sorted(probes)), ...])) for each local; built here
        # from each set's text, made once: the same few sets recur under many
        # keys, and a Probe's repr() and order (dataclass methods) are slow.
        listed: dict[frozenset[Probe], str] = {}

        def listing(probes: frozenset[Probe]) -> str:
            if (text := listed.get(probes)) is None:
                ordered = sorted(probes, key=_probe_order)
                text = listed[probes] = f"[{', '.join(map(repr, ordered))}]"
            return text

        parts = [repr(sorted(self.required))]
        parts.extend(f"({key!r}, {listing(self.probes[key])})" for key in sorted(filter(seen, self.probes)))
        for key in sorted(filter(seen, self._local_values)):
            values = self._local_values[key]
            if len(values) == 1:  # as most locals: assigned once, no join to build
                ((line, probes),) = values.items()
                parts.append(f"({key!r}, [({line!r}, {listed.get(probes) or listing(probes)})])")
                continue
            entries = sorted(values.items())  # by line: each once
            parts.append(f"({key!r}, [{', '.join(f'({line!r}, {listing(probes)})' for line, probes in entries)}])")
        return hashlib.sha256("".join(parts).encode()).hexdigest()  # as one update per part would

    def extended(
        self, functions: Sequence[Function], required: Iterable[str], read: Collection[str]
    ) -> Capabilities | None:
        """This solution extended by `functions`, equal to a solve of them together
        with the functions it was solved over, which may read the keys `read`
        (see keys_read); None when `functions` may write one of those keys, as
        the others would then have to be solved again.

        The solve only adds probes to keys, so it finds the same whatever the
        order of its steps, once none adds any: what `functions` give cannot
        change what the others found unless one of theirs reads a key of these."""
        if not self._keys_written(functions).isdisjoint(read):
            return None
        return Capabilities(functions, self.profile, self, required)

    def _keys_written(self, functions: Iterable[Function]) -> set[str]:
        """The keys the steps of `functions` may add probes to (guest state is no step)."""
        written: set[str] = set()
        for function in functions:
            written.update(a.target for a in function.assignments if not self._is_guest_state(a))
            if function.returns:
                written.add(f"call:{function.name}")
            for call in function.calls:
                written.update(key for key, _ in self._query_outputs(call, function))
        return written

    # -- queries -----------------------------------------------------------

    def of_expression(
        self, expression: Expression, function: Function | None = None, line: int = 0
    ) -> frozenset[Probe]:
        """Probes whose result `expression` depends on (performed at `line` of `function`;
        line 0 means anywhere in it)."""
        return self._of_expression(expression, function, line, None)

    def _of_expression(
        self, expression: Expression, function: Function | None, line: int, solving: _Solving | None
    ) -> frozenset[Probe]:
        found = frozenset(self._direct(expression, function, line)) if self._may_probe(expression) else _NONE
        return self._read(found, expression.subjects, line, solving)

    def _may_probe(self, expression: Expression) -> bool:
        """False when `_direct` finds nothing in `expression`, as it does in most:
        no probe call, no member the kernel fills in."""
        calls = expression.calls
        return bool(
            (calls and not self._probe_calls.isdisjoint(calls)) or (self.profile.host_fields and expression.fields)
        )

    def _read(
        self, found: frozenset[Probe], keys: tuple[str, ...], line: int, solving: _Solving | None
    ) -> frozenset[Probe]:
        """`found` and the probes `keys` carry at `line`; `solving` notes them read."""
        local_values, all_probes = self._local_values, self.probes
        if solving is None:
            excluded = self._is_excluded_subject
        else:
            readers, excluded = solving.readers, solving.excluded
            read_at = (solving.step, line)  # one tuple for every key: a step reads several
            for key in keys:
                readers[key].append(read_at)
        for key in keys:
            if line > 0 and (values := local_values.get(key)) is not None:
                probes = _value_at(values, line)
            else:
                probes = all_probes.get(key, _NONE)
            # Few keys carry probes: only those need asking whether excluded.
            if not probes <= found and not excluded(key):
                found = found | probes
        return found

    def _is_excluded_subject(self, key: str) -> bool:
        kind, _, rest = key.partition(":")
        profile = self.profile
        if kind == "field":
            return any(rest == f or rest.startswith(f + ".") for f in profile.not_capability_fields)
        if kind == "call":
            return rest in profile.not_capability_calls
        return rest.rsplit(":", 1)[-1] in profile.not_capability_identifiers

    def is_excluded(self, expression: Expression) -> bool:
        """True for conditions the profile says are never host capabilities."""
        return any(self._is_excluded_subject(s) for s in expression.subjects)

    def capability_subjects(self, expression: Expression) -> list[str]:
        """The subjects of `expression` that carry a host capability, as keys."""
        if self.is_excluded(expression):
            return []
        keys = [s for s in expression.subjects if self.probes.get(s)]
        keys.extend(f"call:{c}" for c in expression.calls if self._is_probe_call(c))
        return sorted(set(keys))

    def is_host_capability(self, expression: Expression) -> bool:
        return bool(self.capability_subjects(expression))

    # -- fixed point -------------------------------------------------------

    def _is_probe_call(self, name: str) -> bool:
        p = self.profile
        return name in p.extension_calls or name in p.cpuid_calls

    def _direct(self, expression: Expression, function: Function | None, line: int) -> list[Probe]:
        """Probes an expression performs itself."""
        if function is None:
            return []
        found: list[Probe] = []
        calls, profile = expression.calls, self.profile
        path, name = function.path, function.name
        # Line 0 is "anywhere in the function" (a return's value): the probe is then
        # placed at the function, as evidence must point at a line.
        line = line or function.line
        if not profile.extension_calls.isdisjoint(calls):
            found.extend(
                Probe(c, "kvm-cap", path, line, name)
                for c in expression.constants
                if c.startswith("KVM_CAP_") and c not in self.required
            )
        if not profile.cpuid_calls.isdisjoint(calls):
            found.append(Probe(expression.text, "cpuid", path, line, name))
        if not profile.ioctl_calls.isdisjoint(calls):
            found.extend(Probe(c, "ioctl", path, line, name) for c in expression.constants if c in profile.query_ioctls)
        # A member the kernel fills in (s390 `cs->kvm_run->kvm_valid_regs`) is host data where it is read.
        for field in expression.fields:
            found.extend(
                Probe(h, "kvm-run", path, line, name)
                for h in profile.host_fields
                if field == h or field.endswith("." + h) or field.startswith(h + ".") or ("." + h + ".") in field
            )
        return found

    def _guard_probes(self, guard: Guard, function: Function, probes: frozenset[Probe]) -> frozenset[Probe]:
        """What the `probes` of the guard's condition make of the value it guards."""
        if not probes or guard.kind != "case" or not guard.label:
            return probes
        # A case of a switch over a host query: the case label is the probe
        # (`case MSR_SMI_COUNT: has_msr_smi_count = true;`).
        kind = "msr-index-list" if any(p.name == "KVM_GET_MSR_INDEX_LIST" for p in probes) else "case"
        return frozenset(
            Probe(label.strip(), kind, function.path, guard.line, function.name) for label in guard.label.split("|")
        )

    def _condition(self, guard: Guard, function: Function) -> tuple[frozenset[Probe], tuple[str, ...]]:
        """The probes a guard's condition makes itself, and the keys it reads."""
        condition = guard.condition
        if condition.op == "atom":  # as most are: no tree to walk
            atoms: tuple[Expression, ...] = () if condition.atom is None else (condition.atom,)
        else:
            atoms = condition.atoms()
        made = _NONE
        for atom in atoms:
            if self._may_probe(atom):
                made = made.union(self._direct(atom, function, guard.line))
        if len(atoms) == 1:
            return made, atoms[0].subjects
        return made, tuple(key for atom in atoms for key in atom.subjects)

    def _is_guest_state(self, assignment: Assignment) -> bool:
        """Whether an assignment writes migrated CPU state, which is guest state:
        the get path fills it from KVM under capability checks, which does not
        make it a capability. The exceptions are a buffer allocated only when
        the host supports it (`env->nested_state = g_malloc0(...)`): its
        presence is one; and members the profile names as rebuilt from host
        probes on each end instead of migrated (loongarch's `env->cpucfg[2]` LBT bits)."""
        return (
            self.profile.is_state_key(assignment.target)
            and not set(assignment.value.calls) & self.profile.allocation_calls
            and not self._is_host_state(assignment.target)
        )

    def _assignment_probes(self, assignment: Assignment, function: Function, solving: _Solving) -> frozenset[Probe]:
        """The probes an assignment (not of guest state) gives its target."""
        value, line = assignment.value, assignment.line
        direct = frozenset(self._direct(value, function, line)) if self._may_probe(value) else _NONE
        if value.subjects:
            direct = self._read(direct, value.subjects, line, solving)
        if direct or not assignment.guards:
            return direct
        # Control dependence: the innermost if/case over a capability decides the
        # value. Locals such as `ret` are assigned under every kind of check, so
        # for them only a probe made in the condition itself counts
        # (`if (kvm_check_extension(s, KVM_CAP_TSC_CONTROL)) { set_ioctl = true; }`).
        local = assignment.target.startswith("local:")
        conditions, function_id = solving.conditions, id(function)
        for guard in reversed(assignment.guards):
            early = guard.kind == "early-return"
            if local and early:
                continue  # see below: it counts only for what outlives the function
            if (condition := conditions.get((id(guard), function_id))) is None:
                condition = conditions[id(guard), function_id] = self._condition(guard, function)
            made, keys = condition
            if early:
                # `if (!kvm_check_extension(cs->kvm_state, KVM_CAP_SW_TLB)) { return 0; }`
                # above `env->kvm_sw_tlb = true;` (ppc's kvm_booke206_tlb_init)
                # decides the value; `if (ret < 0) { return ret; }` is everywhere,
                # so only a probe made in the condition itself counts, and only
                # for what outlives the function.
                if made:
                    return made
                continue
            probes = made if local or not keys else self._read(made, keys, guard.line, solving)
            if probes:
                return probes if local else self._guard_probes(guard, function, probes)
        return _NONE

    def _is_host_state(self, key: str) -> bool:
        rest = key.removeprefix("field:")
        return any(rest == f or rest.startswith(f + ".") for f in self.profile.host_state_fields)

    def _query_outputs(self, call: Call, function: Function) -> list[tuple[str, Probe]]:
        """Buffers a query ioctl fills in: `kvm_ioctl(s, KVM_GET_MSR_INDEX_LIST, kvm_msr_list)`."""
        if call.callee not in self.profile.ioctl_calls:
            return []
        requests = [c for a in call.arguments for c in a.constants if c in self.profile.query_ioctls]
        if not requests:
            return []
        probe = Probe(requests[0], "ioctl", function.path, call.line, function.name)
        outputs: list[tuple[str, Probe]] = []
        for argument in call.arguments[2:]:
            outputs.extend((s, probe) for s in argument.subjects if s.startswith(("local:", "var:")))
        return outputs

    def _solve(self, functions: tuple[Function, ...]) -> None:
        # The functions are not kept: an analysis (with this) is cached whole.
        ioctl_calls = self.profile.ioctl_calls
        for function in functions:
            for call in function.calls:
                if call.callee not in ioctl_calls:
                    continue  # as most calls: no query
                for key, probe in self._query_outputs(call, function):
                    self._add(key, frozenset({probe}))
                    if key.startswith("local:"):
                        # The ioctl fills the buffer: from here on it holds host data.
                        values = self._local_values.setdefault(key, {})
                        values[call.line] = values.get(call.line, frozenset()) | {probe}
        # Rounds over the assignments and returns in order, each seeing what those
        # before it found, until one adds no probes to any key, or 20 of them. The
        # first evaluates each (a device's functions read what its base holds);
        # the others only those that read something changed since: any other
        # would find what it found before.
        # An assignment of guest state gives its target no probes, in any round:
        # it is no step.
        steps: list[tuple[Function, Assignment | None]] = []
        for function in functions:
            steps.extend((function, a) for a in function.assignments if not self._is_guest_state(a))
            # The result of a probe or ioctl wrapper is judged at each call site,
            # by the KVM_CAP_* or request constant its caller passes.
            wrapper = self._is_probe_call(function.name) or function.name in self.profile.ioctl_calls
            if function.returns and not wrapper:
                steps.append((function, None))
        solving = _Solving(steps, self._is_excluded_subject)
        for _ in range(20):
            changed = False
            for function, assignment in solving.next_round():
                changed |= self._run(function, assignment, solving)
            if not changed:
                break

    def _run(self, function: Function, assignment: Assignment | None, solving: _Solving) -> bool:
        """Evaluate an assignment or (None) the function's returns, and queue the
        steps that read what it changes; True when it added probes to a key."""
        if assignment is None:
            target, line = f"call:{function.name}", 0
            probes = _NONE
            for returned in function.returns:
                probes |= self._of_expression(returned.value, function, 0, solving)
        else:
            target, line = assignment.target, assignment.line
            probes = self._assignment_probes(assignment, function, solving)
        if target.startswith("local:"):
            if (values := self._local_values.get(target)) is None:
                if target in self.probes:
                    solving.touch(target, 1)  # read at a line from `probes` until now, as a local from here on
                values = self._local_values[target] = {}
            if (before := values.get(line)) is None or not probes <= before:
                values[line] = probes if before is None else before | probes
                solving.touch(target, line + 1)  # read as it stands above a line
        if not probes or not self._add(target, probes):
            return False
        # Read from `probes` where read at no line, or not as a local.
        solving.touch(target, 0, 0 if target in self._local_values else None)
        return True

    def _add(self, key: str, probes: frozenset[Probe]) -> bool:
        """Add probes to a key; True when that changed anything."""
        old = self.probes.get(key, frozenset())
        if probes <= old:
            return False
        self.probes[key] = old | probes
        return True


def keys_read(functions: Iterable[Function]) -> frozenset[str]:
    """Every key a solve over `functions` may read: what their assignments,
    returns, calls and the guards of those name (more than it reads, never less)."""
    read: set[str] = set()

    def guarded(guards: Iterable[Guard]) -> None:
        for guard in guards:
            read.update(key for atom in guard.condition.atoms() for key in atom.subjects)

    for function in functions:
        for assignment in function.assignments:
            read.update(assignment.value.subjects)
            guarded(assignment.guards)
        for returned in function.returns:
            read.update(returned.value.subjects)
            guarded(returned.guards)
        for call in function.calls:
            read.add(f"call:{call.callee}")
            read.update(key for argument in call.arguments for key in argument.subjects)
            guarded(call.guards)
    return frozenset(read)
