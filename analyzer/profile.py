"""Target profiles: the per-target data (files, entry points, idioms) the engine reads."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any

from .errors import InputError


@dataclass(frozen=True)
class MachineMacro:
    macro: str
    name: str
    options: str


@dataclass(frozen=True)
class Profile:
    target: str
    cpu_type: str
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

    @cached_property
    def state_roots(self) -> frozenset[str]:
        """Paths that denote a whole state object rather than one of its members."""
        return frozenset({self.cpu_type, *self.state_types.values()})

    def is_ignored_call(self, name: str) -> bool:
        return name in self.ignored_calls or name.startswith(self.ignored_call_prefixes)


def _strings(table: dict[str, Any], key: str) -> tuple[str, ...]:
    return tuple(str(v) for v in table.get(key, ()))


def available_targets() -> list[str]:
    """The targets that have a profile in rules/targets/."""
    directory = resources.files("analyzer.rules").joinpath("targets")
    return sorted(entry.name.removesuffix(".toml") for entry in directory.iterdir() if entry.name.endswith(".toml"))


def load_profile(target: str) -> Profile:
    """Load the profile shipped as `rules/targets/<target>.toml`."""
    resource = resources.files("analyzer.rules").joinpath("targets", f"{target}.toml")
    if not resource.is_file():
        raise InputError(f"no target profile named {target!r}")
    data = tomllib.loads(resource.read_text(encoding="utf-8"))
    probes = data.get("probes", {})
    negative = data.get("not_host_capability", {})
    handoff = data.get("handoff", {})
    compat = data.get("compat", {})
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
    )
