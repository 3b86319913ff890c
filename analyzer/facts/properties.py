"""Machine-type compat facts: CPU properties, GlobalProperty tables, machine types."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tree_sitter import Node

from ..profile import Profile
from ..syntax import Text, captures, named_children, query
from .model import CompatArray, CompatEntry, MachineDefinition, PropertyDefinition
from .vmstate import string_value


def _call_name(node: Node, text: Text) -> str | None:
    function = node.child_by_field_name("function")
    return text.compact(function) if function is not None and function.type == "identifier" else None


def _arguments(node: Node) -> list[Node]:
    arguments = node.child_by_field_name("arguments")
    return named_children(arguments) if arguments is not None else []


def extract_properties(
    root: Node, text: Text, path: str, profile: Profile, spans: Sequence[tuple[int, int]]
) -> list[PropertyDefinition]:
    """`DEFINE_PROP_BOOL("x-migrate-smi-count", X86CPU, migrate_smi_count, true)` and kin,
    in the Property definitions at `spans` (preprocess.property_spans)."""
    found: list[PropertyDefinition] = []
    macro_calls = query("macro_calls", prefix="^" + re.escape(profile.property_macros_prefix))
    for node in captures(macro_calls, root, "call", spans):
        args = _arguments(node)
        if len(args) < 3 or args[0].type not in ("string_literal", "concatenated_string"):
            continue
        found.append(
            PropertyDefinition(
                name=string_value(args[0], text) or "",
                struct_type=text.compact(args[1]),
                member=text.compact(args[2]),
                path=path,
                line=text.line(node),
            )
        )
    return found


def extract_compat_arrays(root: Node, text: Text, path: str) -> list[CompatArray]:
    """`GlobalProperty pc_compat_2_11[] = { { TYPE_X86_CPU, "x-migrate-smi-count", "off" }, };`"""
    found: list[CompatArray] = []
    for declaration in root.named_children:
        if declaration.type != "declaration":
            continue
        type_node = declaration.child_by_field_name("type")
        if type_node is None or text.compact(type_node) != "GlobalProperty":
            continue
        for declarator in declaration.children_by_field_name("declarator"):
            value = declarator.child_by_field_name("value")
            name_node = declarator.child_by_field_name("declarator")
            if value is None or name_node is None or value.type != "initializer_list":
                continue
            while name_node.type == "array_declarator":
                inner = name_node.child_by_field_name("declarator")
                if inner is None:
                    break
                name_node = inner
            entries = [e for e in (_compat_entry(item, text) for item in named_children(value)) if e]
            found.append(CompatArray(text.compact(name_node), path, text.line(declarator), tuple(entries)))
    return found


def _compat_entry(item: Node, text: Text) -> CompatEntry | None:
    if item.type != "initializer_list":
        return None
    values = named_children(item)
    by_key: dict[str, Node] = {}
    positional: list[Node] = []
    for value in values:
        if value.type == "initializer_pair":
            designator = value.child_by_field_name("designator")
            inner = value.child_by_field_name("value")
            if designator is not None and inner is not None:
                by_key[text.compact(designator).lstrip(".")] = inner
        else:
            positional.append(value)
    driver = by_key.get("driver") or (positional[0] if len(positional) > 0 else None)
    prop = by_key.get("property") or (positional[1] if len(positional) > 1 else None)
    setting = by_key.get("value") or (positional[2] if len(positional) > 2 else None)
    if driver is None or prop is None or setting is None:
        return None
    return CompatEntry(
        driver=text.spaced(driver),
        property=string_value(prop, text) or "",
        value=string_value(setting, text) or "",
        line=text.line(item),
    )


def extract_machines(root: Node, text: Text, path: str, profile: Profile) -> list[MachineDefinition]:
    """Machine types registered at file scope by the profile's DEFINE_*_MACHINE macros."""
    macros = {m.macro: m for m in profile.machine_macros}
    found: list[MachineDefinition] = []
    names = "^(" + "|".join(re.escape(m) for m in sorted(macros)) + ")$"
    for node in captures(query("macro_calls", prefix=names), root, "call"):
        name = _call_name(node, text)
        if name not in macros:
            continue
        args = _arguments(node)
        strings = [string_value(a, text) for a in args if a.type == "string_literal"]
        identifiers = [text.compact(a) for a in args if a.type == "identifier"]
        if strings and identifiers:
            # QEMU <= 9.0: DEFINE_Q35_MACHINE(v7_2, "pc-q35-7.2", NULL, pc_q35_7_2_machine_options)
            machine, options = strings[0] or "", identifiers[-1]
        elif args and all(a.type == "number_literal" for a in args):
            numbers = [text.compact(a) for a in args]
            macro = macros[name]
            machine = macro.name.format(dotted=".".join(numbers))
            options = macro.options.format(underscored="_".join(numbers))
        else:
            continue
        found.append(MachineDefinition(machine, options, path, text.line(node)))
    return found
