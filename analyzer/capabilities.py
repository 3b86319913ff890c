"""Which symbols carry a host-kernel capability, and where it was probed.

A flag is a host capability because of where its value comes from, not
because of its `has_` prefix: we follow assignments from the probes the
profile names (`kvm_check_extension(s, KVM_CAP_*)`, query ioctls such as
KVM_GET_MSR_INDEX_LIST and the switch over their result, supported CPUID)
through locals, statics, struct members and accessor return values, until
nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .facts.model import Assignment, Call, Expression, Function, Guard
from .profile import Profile


@dataclass(frozen=True, order=True)
class Probe:
    """Where the host kernel was asked: `KVM_CAP_NESTED_STATE`, `MSR_SMI_COUNT`."""

    name: str
    kind: str  # kvm-cap, msr-index-list, cpuid, ioctl
    path: str
    line: int
    function: str


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
        self.required: frozenset[str] = frozenset(required) | (base.required if base else frozenset())
        self.probes: dict[str, frozenset[Probe]] = dict(base.probes) if base else {}
        # Locals are reused (`r = kvm_check_extension(...)`, later
        # `r = hyperv_handle_properties(...)`): keep each assignment's probes by
        # line, so a condition sees the value most recently assigned above it.
        self._local_values: dict[str, dict[int, frozenset[Probe]]] = (
            {key: dict(values) for key, values in base._local_values.items()} if base else {}
        )
        self._solve(tuple(functions))

    # -- queries -----------------------------------------------------------

    def of_expression(
        self, expression: Expression, function: Function | None = None, line: int = 0
    ) -> frozenset[Probe]:
        """Probes whose result `expression` depends on (performed at `line` of `function`;
        line 0 means anywhere in it)."""
        found = set(self._direct(expression, function, line))
        for subject in expression.subjects:
            if self._is_excluded_subject(subject):
                continue
            if line > 0 and subject in self._local_values:
                found.update(self._local_value_at(subject, line))
            else:
                found.update(self.probes.get(subject, ()))
        return frozenset(found)

    def _local_value_at(self, key: str, line: int) -> frozenset[Probe]:
        """Probes of the last assignment to a local above `line` (branches and loops ignored)."""
        earlier = [assigned for assigned in self._local_values[key] if assigned < line]
        return self._local_values[key][max(earlier)] if earlier else frozenset()

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
        calls = set(expression.calls)
        path, name = function.path, function.name
        if calls & self.profile.extension_calls:
            found.extend(
                Probe(c, "kvm-cap", path, line, name)
                for c in expression.constants
                if c.startswith("KVM_CAP_") and c not in self.required
            )
        if calls & self.profile.cpuid_calls:
            found.append(Probe(expression.text, "cpuid", path, line, name))
        if calls & self.profile.ioctl_calls:
            found.extend(
                Probe(c, "ioctl", path, line, name) for c in expression.constants if c in self.profile.query_ioctls
            )
        # A member the kernel fills in (s390 `cs->kvm_run->kvm_valid_regs`) is host data where it is read.
        for field in expression.fields:
            found.extend(
                Probe(h, "kvm-run", path, line or function.line, name)
                for h in self.profile.host_fields
                if field == h or field.endswith("." + h) or field.startswith(h + ".") or ("." + h + ".") in field
            )
        return found

    def _guard_probes(self, guard: Guard, function: Function) -> frozenset[Probe]:
        probes = frozenset(
            p for atom in guard.condition.atoms() for p in self.of_expression(atom, function, guard.line)
        )
        if not probes or guard.kind != "case" or not guard.label:
            return probes
        # A case of a switch over a host query: the case label is the probe
        # (`case MSR_SMI_COUNT: has_msr_smi_count = true;`).
        kind = "msr-index-list" if any(p.name == "KVM_GET_MSR_INDEX_LIST" for p in probes) else "case"
        return frozenset(
            Probe(label.strip(), kind, function.path, guard.line, function.name) for label in guard.label.split("|")
        )

    def _assignment_probes(self, assignment: Assignment, function: Function) -> frozenset[Probe]:
        if (
            assignment.target_is_state
            and not set(assignment.value.calls) & self.profile.allocation_calls
            and not self._is_host_state(assignment.target)
        ):
            # Migrated CPU state is guest state: the get path fills it from KVM
            # under capability checks, which does not make it a capability. The
            # exceptions are a buffer allocated only when the host supports
            # it (`env->nested_state = g_malloc0(...)`): its presence is one;
            # and members the profile names as rebuilt from host probes on each
            # end instead of migrated (loongarch's `env->cpucfg[2]` LBT bits).
            return frozenset()
        direct = self.of_expression(assignment.value, function, assignment.line)
        if direct:
            return direct
        # Control dependence: the innermost if/case over a capability decides the
        # value. Locals such as `ret` are assigned under every kind of check, so
        # for them only a probe made in the condition itself counts
        # (`if (kvm_check_extension(s, KVM_CAP_TSC_CONTROL)) { set_ioctl = true; }`).
        local = assignment.target.startswith("local:")
        for guard in reversed(assignment.guards):
            if guard.kind == "early-return":
                # `if (!kvm_check_extension(cs->kvm_state, KVM_CAP_SW_TLB)) { return 0; }`
                # above `env->kvm_sw_tlb = true;` (ppc's kvm_booke206_tlb_init)
                # decides the value; `if (ret < 0) { return ret; }` is everywhere,
                # so only a probe made in the condition itself counts, and only
                # for what outlives the function.
                if not local:
                    probes = frozenset(
                        p for atom in guard.condition.atoms() for p in self._direct(atom, function, guard.line)
                    )
                    if probes:
                        return probes
                continue
            if local:
                probes = frozenset(
                    p for atom in guard.condition.atoms() for p in self._direct(atom, function, guard.line)
                )
            else:
                probes = self._guard_probes(guard, function)
            if probes:
                return probes
        return frozenset()

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
        for function in functions:
            for call in function.calls:
                for key, probe in self._query_outputs(call, function):
                    self._add(key, frozenset({probe}))
                    if key.startswith("local:"):
                        # The ioctl fills the buffer: from here on it holds host data.
                        values = self._local_values.setdefault(key, {})
                        values[call.line] = values.get(call.line, frozenset()) | {probe}
        for _ in range(20):
            changed = False
            for function in functions:
                for assignment in function.assignments:
                    probes = self._assignment_probes(assignment, function)
                    if assignment.target.startswith("local:"):
                        values = self._local_values.setdefault(assignment.target, {})
                        values[assignment.line] = values.get(assignment.line, frozenset()) | probes
                    if probes and self._add(assignment.target, probes):
                        changed = True
                if self._is_probe_call(function.name) or function.name in self.profile.ioctl_calls:
                    # The result of a probe or ioctl wrapper is judged at each call
                    # site, by the KVM_CAP_* or request constant its caller passes.
                    continue
                returned: set[Probe] = set()
                for returned_value in function.returns:
                    returned.update(self.of_expression(returned_value.value, function))
                if returned and self._add(f"call:{function.name}", frozenset(returned)):
                    changed = True
            if not changed:
                break

    def _add(self, key: str, probes: frozenset[Probe]) -> bool:
        """Add probes to a key; True when that changed anything."""
        old = self.probes.get(key, frozenset())
        if probes <= old:
            return False
        self.probes[key] = old | probes
        return True
