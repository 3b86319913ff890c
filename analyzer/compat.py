"""Machine-type compat properties that keep a subsection's needed() false."""

from __future__ import annotations

from collections.abc import Iterable

from .facts.model import CompatArray, Function, MachineDefinition, PropertyDefinition
from .profile import Profile
from .record import Record

_OFF = {"off", "false", "no", "0"}


class CompatMitigation(Record):
    property: PropertyDefinition
    arrays: tuple[CompatArray, ...]  # tables that switch the property off
    entry_lines: tuple[int, ...]  # the entry in each table
    machines: tuple[MachineDefinition, ...]  # machine types those tables apply to


class CompatIndex:
    def __init__(
        self,
        properties: Iterable[PropertyDefinition],
        arrays: Iterable[CompatArray],
        machines: Iterable[MachineDefinition],
        functions: Iterable[Function],
        profile: Profile,
    ) -> None:
        self.profile = profile
        self.by_member = {(p.struct_type, p.member): p for p in properties}
        self.arrays = tuple(arrays)
        self.machines = tuple(machines)
        self.functions = {f.name: f for f in functions}

    def property_for(self, state_path: str) -> PropertyDefinition | None:
        """Map `X86CPU.migrate_smi_count` to its DEFINE_PROP_* definition."""
        struct_type, _, member = state_path.partition(".")
        return self.by_member.get((struct_type, member))

    def mitigation(self, prop: PropertyDefinition) -> CompatMitigation:
        arrays: list[CompatArray] = []
        lines: list[int] = []
        for array in self.arrays:
            for entry in array.entries:
                if (
                    entry.property == prop.name
                    and entry.driver in self.profile.cpu_drivers
                    and entry.value.lower() in _OFF
                ):
                    arrays.append(array)
                    lines.append(entry.line)
        return CompatMitigation(prop, tuple(arrays), tuple(lines), self._machines_using({a.symbol for a in arrays}))

    def _machines_using(self, array_symbols: set[str]) -> tuple[MachineDefinition, ...]:
        """Machine types whose options function adds one of the tables, directly or
        through the older-version options functions it chains to."""
        adders = {
            f.name
            for f in self.functions.values()
            for call in f.calls
            if call.callee in self.profile.compat_add_calls
            and any(s in array_symbols for a in call.arguments for s in _names(a.subjects))
        }
        applying = set(adders)
        changed = True
        while changed:
            changed = False
            for function in self.functions.values():
                if function.name not in applying and any(c.callee in applying for c in function.calls):
                    applying.add(function.name)
                    changed = True
        found = [m for m in self.machines if m.options_function in applying]
        return tuple(sorted(found, key=_machine_order))


def _names(subjects: Iterable[str]) -> list[str]:
    return [s.rsplit(":", 1)[-1] for s in subjects]


def _machine_order(machine: MachineDefinition) -> tuple[str, tuple[int, ...]]:
    family, _, version = machine.name.rpartition("-")
    numbers = tuple(int(p) if p.isdigit() else 0 for p in version.split("."))
    return family, numbers
