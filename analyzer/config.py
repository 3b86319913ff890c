"""`.vmstate-guard.toml`: rules on/off, severities, accepted subsections, fork idioms.

    [rules]
    disable = ["VG001"]                   # ids or names
    severity = { VG001 = "error" }        # error, warning or note

    [[accept]]                            # findings a maintainer has reviewed
    subsection = "cpu/msr_smi_count"
    reason = "x-migrate-smi-count keeps it off on the machine types we ship"
    rule = "VG001"                        # optional: every rule when absent

    [capabilities]                        # forks that name their probes differently
    extension_calls = ["fork_kvm_has_cap"]
    cpuid_calls = []
    query_ioctls = []
    not_host_capability_calls = []
    put_entry_points = []

Unknown keys are errors that name the key and the file: a typo must not
silently switch a check off.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InputError
from .profile import Profile
from .record import Record

CONFIG_NAME = ".vmstate-guard.toml"
SEVERITIES = ("error", "warning", "note")
_CAPABILITY_KEYS = (
    "extension_calls",
    "cpuid_calls",
    "query_ioctls",
    "not_host_capability_calls",
    "put_entry_points",
)


class Acceptance(Record):
    subsection: str
    reason: str
    rule: str | None = None  # rule id; None accepts every rule


class Config(Record):
    source: str | None = None
    disabled: frozenset[str] = frozenset()  # rule ids
    # Never changed in place, so one empty default serves every config.
    severity: dict[str, str] = {}  # noqa: RUF012  (rule id -> severity)
    accepted: tuple[Acceptance, ...] = ()
    capabilities: dict[str, tuple[str, ...]] = {}  # noqa: RUF012

    def is_enabled(self, rule_id: str) -> bool:
        return rule_id not in self.disabled

    def with_rules(self, select: Sequence[str] = (), ignore: Sequence[str] = ()) -> Config:
        """The config with `--select` (only these rules, whatever [rules] disable says)
        and `--ignore` (not these) from the command line; ids or names."""
        from .rules import RULES

        disabled = set(self.disabled)
        if select:
            chosen = {_rule_id(key, "--select", "command line") for key in select}
            disabled = {rule.id for rule in RULES if rule.id not in chosen}
        disabled.update(_rule_id(key, "--ignore", "command line") for key in ignore)
        return self._replace(disabled=frozenset(disabled))

    def acceptance(self, rule_id: str, subsection: str) -> Acceptance | None:
        for entry in self.accepted:
            if entry.subsection == subsection and entry.rule in (None, rule_id):
                return entry
        return None

    def extend(self, profile: Profile) -> Profile:
        """The profile with this fork's extra idioms added."""
        extra = self.capabilities
        if not extra:
            return profile
        return profile._replace(
            extension_calls=profile.extension_calls | set(extra.get("extension_calls", ())),
            cpuid_calls=profile.cpuid_calls | set(extra.get("cpuid_calls", ())),
            query_ioctls=profile.query_ioctls | set(extra.get("query_ioctls", ())),
            not_capability_calls=profile.not_capability_calls | set(extra.get("not_host_capability_calls", ())),
            put_entry_points=profile.put_entry_points + tuple(extra.get("put_entry_points", ())),
        )


def _unknown(data: dict[str, Any], allowed: tuple[str, ...], where: str, source: str) -> None:
    for key in data:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            raise InputError(f"{source}: unknown key '{name}' (allowed: {', '.join(allowed)})")


def _string_list(value: Any, name: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{source}: '{name}' must be a list of strings")
    return tuple(value)


def _toml_type(value: Any) -> str:
    """What TOML calls the type of a parsed value."""
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (list, "an array")):
        if isinstance(value, kind):
            return name
    return "a table" if isinstance(value, dict) else "a date or time"


def _rule_id(key: str, name: str, source: str) -> str:
    from .rules import find_rule

    rule = find_rule(key)
    if rule is None:
        raise InputError(f"{source}: '{name}' names no rule: {key!r} (see vmstate-guard --list-rules)")
    return rule.id


def parse_config(text: str, source: str) -> Config:
    import tomllib  # only where a tree has a config: most runs read none

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{source}: not valid TOML: {error}") from None
    _unknown(data, ("rules", "accept", "capabilities"), "", source)
    rules = data.get("rules", {})
    if not isinstance(rules, dict):
        raise InputError(f"{source}: 'rules' must be a table")
    _unknown(rules, ("disable", "severity"), "rules", source)
    disabled = frozenset(
        _rule_id(k, "rules.disable", source) for k in _string_list(rules.get("disable", []), "rules.disable", source)
    )
    severity: dict[str, str] = {}
    severity_table = rules.get("severity", {})
    if not isinstance(severity_table, dict):
        raise InputError(f"{source}: 'rules.severity' must be a table")
    for key, value in severity_table.items():
        if value not in SEVERITIES:
            raise InputError(f"{source}: 'rules.severity.{key}' must be one of {', '.join(SEVERITIES)}")
        severity[_rule_id(key, f"rules.severity.{key}", source)] = value
    accepted: list[Acceptance] = []
    entries = data.get("accept", [])
    if not isinstance(entries, list):
        raise InputError(f"{source}: 'accept' must be an array of tables ([[accept]])")
    for index, entry in enumerate(entries):
        where = f"accept[{index}]"
        if not isinstance(entry, dict):
            raise InputError(f"{source}: '{where}' must be a table")
        _unknown(entry, ("subsection", "reason", "rule"), where, source)
        for key in ("subsection", "reason", "rule"):
            # A value of another type must not read as absent: `rule = ["VG003"]`
            # would then accept every rule's finding.
            if key in entry and not isinstance(entry[key], str):
                raise InputError(f"{source}: '{where}.{key}' must be a string, not {_toml_type(entry[key])}")
        subsection, reason = entry.get("subsection"), entry.get("reason")
        if not subsection:
            raise InputError(f"{source}: '{where}.subsection' is required (the subsection's name, e.g. cpu/foo)")
        if not reason or not reason.strip():
            raise InputError(f"{source}: '{where}.reason' is required: say why this finding is acceptable")
        rule = entry.get("rule")
        rule_id = _rule_id(rule, f"{where}.rule", source) if rule is not None else None
        accepted.append(Acceptance(subsection, reason.strip(), rule_id))
    capabilities_table = data.get("capabilities", {})
    if not isinstance(capabilities_table, dict):
        raise InputError(f"{source}: 'capabilities' must be a table")
    _unknown(capabilities_table, _CAPABILITY_KEYS, "capabilities", source)
    capabilities = {
        key: _string_list(value, f"capabilities.{key}", source) for key, value in capabilities_table.items()
    }
    return Config(source, disabled, severity, tuple(accepted), capabilities)


def load_config(explicit: Path | None, tree_root: Path | None) -> Config:
    """The config given with --config, else `.vmstate-guard.toml` at the tree root, else defaults."""
    path = explicit
    if path is None and tree_root is not None and (tree_root / CONFIG_NAME).is_file():
        path = tree_root / CONFIG_NAME
    if path is None:
        return Config()
    return parse_config(read_user_file(path, "config"), str(path))


def read_user_file(path: Path, what: str) -> str:
    """The UTF-8 text of a file the user names (`what`: config, baseline);
    InputError when it cannot be read or is not a regular file (a FIFO would
    wait for a writer forever)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise InputError(f"{path}: cannot read {what}: not a regular file")
            return handle.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read {what}: {getattr(error, 'strerror', None) or error}") from None
