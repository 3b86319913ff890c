"""Target profiles: the per-target data (files, entry points, idioms) the engine reads."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .packages import package_directory
from .record import Record

if TYPE_CHECKING:
    from .cache import FactsCache


class MachineMacro(Record):
    macro: str
    name: str
    options: str


class RegisterTable(Record):
    """A static table whose entries name a state member by offset, read on the put path by `readers`."""

    entry_macro: str
    member_argument: int
    state_path: str
    readers: frozenset[str]


class CpuModel(Record):
    """A guest CPU model the destination checks against its host before it runs.

    `needed()` testing `feature_call(FEATURE)` means the source's model had
    FEATURE; the destination, with the same model, starts only if its host
    offers it (`check_function`), and such a host always passes the put guard
    naming `guarantees[FEATURE]` (s390x: S390_FEAT_VECTOR -> KVM_SYNC_VRS).
    """

    feature_calls: frozenset[str]
    check_function: str
    guarantees: dict[str, str]  # feature constant -> constant of the guard it makes hold


class Profile(Record):
    """One *unit* of a target: its CPU, or one KVM-backed device (`unit` names it).

    A named tuple, like the records: every run builds each target's profile,
    and a dataclass costs ten times as much to define."""

    target: str
    cpu_type: str  # the opaque type of the unit's top-level description (X86CPU, KVMClockState)
    put_entry_points: tuple[str, ...]
    get_entry_points: tuple[str, ...]
    msr_entry_calls: dict[str, int]
    files: dict[str, tuple[str, ...]]
    layout_roles: frozenset[str]  # roles whose candidates are one file in different layouts
    state_types: dict[str, str]
    extension_calls: frozenset[str]
    cpuid_calls: frozenset[str]
    ioctl_calls: frozenset[str]
    query_ioctls: frozenset[str]
    allocation_calls: frozenset[str]
    host_state_fields: tuple[str, ...]  # CPU state members QEMU derives from host probes
    host_fields: tuple[str, ...]  # members the kernel fills in: `kvm_run.kvm_valid_regs`
    not_capability_fields: tuple[str, ...]
    not_capability_calls: frozenset[str]
    not_capability_identifiers: frozenset[str]
    ignored_calls: frozenset[str]
    ignored_call_prefixes: tuple[str, ...]
    cpu_drivers: frozenset[str]
    property_macros_prefix: str
    compat_add_calls: frozenset[str]
    failure_calls: frozenset[str]
    kvm_headers: tuple[str, ...]
    subject_prefix: str
    build_guard: str
    assumed_calls: frozenset[str]
    machine_macros: tuple[MachineMacro, ...]
    # Calls that return a pointer into the CPU state (`cpu_fpr_ptr(env, i)` ->
    # "PowerPCCPU.env.vsr"). The profile writes them relative to the CPU type;
    # they are stored whole so that a device unit, which shares the CPU's
    # idioms under its own cpu_type, does not take them for its own members.
    accessors: dict[str, str]
    # Buffers QEMU registers with KVM by address (at vCPU init) and KVM rereads
    # when a put-path call passes the request constant: "KVM_DIRTY_TLB" ->
    # ("PowerPCCPU.env.tlb.tlbm",), full state paths.
    shared_buffers: dict[str, tuple[str, ...]]
    # Calls that write CPU state computed from their last argument
    # (`vfp_set_fpsr(env, val)` -> ("ARMCPU.env.vfp.fpsr",)): full state paths.
    setters: dict[str, tuple[str, ...]]
    # What the fact extractor reads, the same for every unit of the target so that
    # a file read by several (target/ppc/kvm.c) is extracted once: the state types
    # of all its units, and the types whose locals are roots rather than aliases.
    extraction_state_types: dict[str, str]
    unit_state_types: frozenset[str]
    register_tables: tuple[RegisterTable, ...] = ()
    unit: str = "cpu"
    cpu_model: CpuModel | None = None
    # Capabilities without which QEMU refuses to run where they matter, beyond
    # the KVMCapabilityInfo tables (ppc's KVM_CAP_PPC_SEGSTATE at vCPU init).
    required_capabilities: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """`i386` for a CPU, `i386/kvmclock` for a device."""
        return self.target if self.unit == "cpu" else f"{self.target}/{self.unit}"

    def is_state_key(self, key: str) -> bool:
        """Whether a symbol key is a member of this unit's migrated state."""
        return key.startswith(f"field:{self.cpu_type}.")

    def extraction_key(self, data: bytes) -> str:
        """What the fact extractor would read of this profile in a file of these
        bytes (every profile field analyzer/facts reads, as far as the file names
        it). Units whose keys agree get the same facts from the file, so it is
        parsed once for all of them: the units of a target, which share these
        fields but for their machine types, and targets alike in a file
        (accel/kvm/kvm-all.c, hw/core/machine.c)."""

        def present(name: str) -> bool:
            return name.encode() in data

        check = self.cpu_model.check_function if self.cpu_model else None
        used = (
            sorted((k, v) for k, v in self.extraction_state_types.items() if present(k)),
            sorted(t for t in self.unit_state_types if present(t)),
            sorted((k, v) for k, v in self.accessors.items() if present(k)),
            [t for t in self.register_tables if present(t.entry_macro)],
            [m for m in self.machine_macros if present(m.macro)],
            self.property_macros_prefix if present(self.property_macros_prefix) else None,
            sorted(c for c in self.compat_add_calls if present(c)),
            check if check and present(check) else None,
        )
        return repr(used)

    def is_ignored_call(self, name: str) -> bool:
        return name in self.ignored_calls or name.startswith(self.ignored_call_prefixes)


def _strings(table: dict[str, Any], key: str) -> tuple[str, ...]:
    return tuple(str(v) for v in table.get(key, ()))


def available_targets() -> list[str]:
    """The targets that have a profile in rules/targets/."""
    return list(_target_names())


# Profiles are package data, fixed for the life of the process: the command line
# lists them for --target, and an audit opens each one to see whether the tree
# has its target, then again to open its units. Each is read and parsed once.
@cache
def _target_names() -> tuple[str, ...]:
    return tuple(sorted(e.name.removesuffix(".toml") for e in _targets().iterdir() if e.name.endswith(".toml")))


def _targets() -> Path:
    """rules/targets/, found without importing analyzer.rules, whose rules import the
    audit's modules: --help and completion list the targets, and need none of them."""
    return package_directory("analyzer.rules") / "targets"


def _read(target: str) -> bytes:
    path = _targets() / f"{target}.toml"
    if not path.is_file():
        raise InputError(f"no target profile named {target!r}")
    return path.read_bytes()


def load_profile(target: str, cache: FactsCache | None = None) -> Profile:
    """The CPU unit of the profile shipped as `rules/targets/<target>.toml`."""
    return load_units(target, cache)[0]


_loaded: dict[str, tuple[Profile, ...]] = {}


def load_units(target: str, cache: FactsCache | None = None) -> tuple[Profile, ...]:
    """The target's CPU, then each KVM-backed device its profile lists under [[devices]].

    A device shares the target's idioms; it has its own files, entry points
    and state type. Its description usually lives in a `*_common.c` file and
    its KVM code in a `*_kvm.c` one, reached through class hooks, so the hook
    implementations are its entry points. The audit lends it the CPU unit's
    KVM functions for the capability predicates they define.

    Read once a process; with a `cache`, parsed once for these bytes: a run
    that reads every profile spends more parsing TOML than loading the result.
    """
    found = _loaded.get(target)
    if found is None:
        data = _read(target)
        found = cache.load_profiles(target, data) if cache else None
        if found is None:
            found = _parse_units(data)
            if cache:
                cache.store_profiles(target, data, found)
        _loaded[target] = found
    return found


def _parse_units(text: bytes) -> tuple[Profile, ...]:
    import tomllib  # not imported by a run that finds its profiles cached

    data = tomllib.loads(text.decode("utf-8"))
    cpu = _cpu_profile(data)
    devices = []
    for device in data.get("devices", ()):
        devices.append(
            cpu._replace(
                unit=str(device["name"]),
                cpu_type=str(device["state_type"]),
                put_entry_points=_strings(device, "put_entry_points"),
                get_entry_points=_strings(device, "get_entry_points"),
                files={role: tuple(paths) for role, paths in device["files"].items()},
                layout_roles=frozenset({"vmstate", "kvm"}),
                state_types=dict(device.get("state_types", {})),
                msr_entry_calls={},
                machine_macros=(),
            )
        )
    return (cpu, *devices)


def _cpu_profile(data: dict[str, Any]) -> Profile:
    probes = data.get("probes", {})
    negative = data.get("not_host_capability", {})
    handoff = data.get("handoff", {})
    compat = data.get("compat", {})
    devices = data.get("devices", ())
    units = [data, *devices]  # the CPU's table and each device's
    return Profile(
        target=data["target"],
        cpu_type=data["cpu_type"],
        put_entry_points=_strings(data, "put_entry_points"),
        get_entry_points=_strings(data, "get_entry_points"),
        msr_entry_calls={str(k): int(v) for k, v in data.get("msr", {}).get("entry_calls", {}).items()},
        files={role: tuple(paths) for role, paths in data["files"].items()},
        layout_roles=frozenset(_strings(data, "layout_roles")),
        state_types=dict(data.get("state_types", {})),
        extension_calls=frozenset(_strings(probes, "extension_calls")),
        cpuid_calls=frozenset(_strings(probes, "cpuid_calls")),
        ioctl_calls=frozenset(_strings(probes, "ioctl_calls")),
        query_ioctls=frozenset(_strings(probes, "query_ioctls")),
        allocation_calls=frozenset(_strings(probes, "allocation_calls")),
        host_state_fields=_strings(probes, "host_state_fields"),
        host_fields=_strings(probes, "host_fields"),
        required_capabilities=_strings(probes, "required"),
        not_capability_fields=_strings(negative, "fields"),
        not_capability_calls=frozenset(_strings(negative, "calls")),
        not_capability_identifiers=frozenset(_strings(negative, "identifiers")),
        ignored_calls=frozenset(_strings(handoff, "ignored_calls")),
        ignored_call_prefixes=_strings(handoff, "ignored_call_prefixes"),
        cpu_drivers=frozenset(_strings(compat, "cpu_drivers")),
        property_macros_prefix=str(compat.get("property_macros_prefix", "DEFINE_PROP_")),
        compat_add_calls=frozenset(_strings(compat, "compat_add_calls")),
        failure_calls=frozenset(_strings(data.get("post_load", {}), "failure_calls")),
        assumed_calls=frozenset(_strings(data.get("post_load", {}), "assumed_calls")),
        kvm_headers=_strings(data.get("patch", {}), "kvm_headers"),
        subject_prefix=str(data.get("patch", {}).get("subject_prefix", data["target"])),
        build_guard=str(data.get("patch", {}).get("build_guard", "CONFIG_KVM")),
        machine_macros=tuple(MachineMacro(m["macro"], m["name"], m["options"]) for m in data.get("machine_macros", ())),
        register_tables=tuple(
            RegisterTable(
                str(t["entry_macro"]),
                int(t["member_argument"]),
                str(t["state_path"]),
                frozenset(_strings(t, "readers")),
            )
            for t in data.get("register_tables", ())
        ),
        accessors={str(k): f"{data['cpu_type']}.{v}" for k, v in handoff.get("accessors", {}).items()},
        extraction_state_types={str(k): str(v) for unit in units for k, v in unit.get("state_types", {}).items()},
        unit_state_types=frozenset(
            [str(data["cpu_type"]), *(str(d["state_type"]) for d in devices)]
            + [str(k) for unit in units for k in unit.get("state_types", {})]
        ),
        shared_buffers={str(k): tuple(str(p) for p in v) for k, v in handoff.get("shared_buffers", {}).items()},
        setters={str(k): tuple(f"{data['cpu_type']}.{p}" for p in v) for k, v in handoff.get("setters", {}).items()},
        cpu_model=_cpu_model(data.get("cpu_model")),
    )


def _cpu_model(table: dict[str, Any] | None) -> CpuModel | None:
    if not table:
        return None
    return CpuModel(
        feature_calls=frozenset(_strings(table, "feature_calls")),
        check_function=str(table.get("check_function", "")),
        guarantees={str(k): str(v) for k, v in table.get("guarantees", {}).items()},
    )
