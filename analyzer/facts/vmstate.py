"""VMStateDescription facts: name, callbacks, fields and subsection lists."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tree_sitter import Node

from ..preprocess import MaskedSource
from ..syntax import Text, named_children
from .model import Codec, Description, Diagnostic, SubsectionEntry, VMStateField
from .reuse import Described, Reuse, node_key

CALLBACKS = ("needed", "post_load", "pre_load", "pre_save")
_OFFSETOF = re.compile(r"offsetof\((?P<type>[^,]+),(?P<member>[^)]+)\)")


def is_description(declaration: Node, text: Text) -> bool:
    return _declared_type(declaration, text) == "VMStateDescription"


def _declared_type(declaration: Node, text: Text) -> str | None:
    type_node = declaration.child_by_field_name("type")
    return text.compact(type_node) if type_node is not None else None


def _initialized(declaration: Node, text: Text) -> Iterator[tuple[Node, str, Node]]:
    """(declarator, name, initializer list) of each `name = { ... }` a declaration makes."""
    for declarator in declaration.children_by_field_name("declarator"):
        if declarator.type != "init_declarator":
            continue
        value = declarator.child_by_field_name("value")
        name_node = declarator.child_by_field_name("declarator")
        if value is None or name_node is None or value.type != "initializer_list":
            continue
        if name_node.type == "identifier":  # not an array of them (`*const subs[]`)
            yield name_node, text.compact(name_node), value


def extract_codecs(root: Node, text: Text, path: str) -> list[Codec]:
    """`VMStateInfo`s defined at file scope: their get and put functions."""
    codecs: list[Codec] = []
    for declaration in root.named_children:
        if declaration.type != "declaration" or _declared_type(declaration, text) != "VMStateInfo":
            continue
        for name_node, symbol, value in _initialized(declaration, text):
            pairs = _designated(value, text)
            get, put = (_identifier(pairs[k], text) if k in pairs else None for k in ("get", "put"))
            codecs.append(Codec(symbol, get, put, path, text.line(name_node)))
    return codecs


def string_value(node: Node | None, text: Text) -> str | None:
    """Return the C string a literal (or concatenation of literals) spells, else its text."""
    if node is None:
        return None
    if node.type == "string_literal":
        return "".join(text.raw(c) for c in node.named_children if c.type in ("string_content", "escape_sequence"))
    if node.type == "concatenated_string":
        return "".join(string_value(c, text) or "" for c in named_children(node) if c.type == "string_literal")
    return text.spaced(node)


def _designated(initializer: Node, text: Text) -> dict[str, Node]:
    """Map `.key = value` pairs of an initializer list to their value nodes."""
    pairs: dict[str, Node] = {}
    for pair in named_children(initializer):
        if pair.type != "initializer_pair":
            continue
        designator = pair.child_by_field_name("designator")
        value = pair.child_by_field_name("value")
        if designator is not None and value is not None:
            pairs[text.compact(designator).lstrip(".")] = value
    return pairs


def _list_items(value: Node) -> list[Node]:
    """Items of `(const T[]) { a, b }` or a bare `{ a, b }`."""
    if value.type == "compound_literal_expression":
        inner = value.child_by_field_name("value")
        return named_children(inner) if inner is not None else []
    if value.type == "initializer_list":
        return named_children(value)
    return []


def _identifier(node: Node, text: Text) -> str | None:
    while node.type in ("pointer_expression", "parenthesized_expression", "cast_expression"):
        children = named_children(node)
        if not children:
            return None
        node = children[-1]
    return text.compact(node) if node.type == "identifier" else None


def extract_descriptions(
    root: Node, text: Text, masked: MaskedSource, path: str, reuse: Reuse | None = None
) -> tuple[list[Description], list[Diagnostic]]:
    """The descriptions of the file's declarations, and notes on entries not understood;
    with `reuse`, those of a declaration as it was at the last extraction taken back."""
    descriptions: list[Description] = []
    diagnostics: list[Diagnostic] = []
    for declaration in root.named_children:
        if declaration.type != "declaration" or not is_description(declaration, text):
            continue
        key = None
        if reuse is not None and not declaration.has_error:
            condition = masked.condition_at(declaration.start_byte)
            key = node_key(declaration, text.original, masked.text, text.column(declaration), condition, b"")
            if (known := reuse.described(key, text.line(declaration))) is not None:
                descriptions += known.descriptions
                diagnostics += known.diagnostics
                continue
        first, first_diagnostic = len(descriptions), len(diagnostics)
        _describe(declaration, text, masked, path, descriptions, diagnostics)
        if reuse is not None and key is not None:
            found = Described(
                text.line(declaration), tuple(descriptions[first:]), tuple(diagnostics[first_diagnostic:])
            )
            reuse.made_described(key, found)
    return descriptions, diagnostics


def _describe(
    declaration: Node,
    text: Text,
    masked: MaskedSource,
    path: str,
    descriptions: list[Description],
    diagnostics: list[Diagnostic],
) -> None:
    """Add the descriptions one declaration defines, and notes on what of them is not understood."""
    storage = {text.compact(c) for c in declaration.children if c.type == "storage_class_specifier"}
    for name_node, symbol, value in _initialized(declaration, text):
        pairs = _designated(value, text)
        callbacks = {key: text.compact(pairs[key]) for key in CALLBACKS if key in pairs}
        fields: list[VMStateField] = []
        for item in _list_items(pairs["fields"]) if "fields" in pairs else []:
            field = _field(item, text, masked)
            if field is None:
                diagnostics.append(
                    Diagnostic(path, text.line(item), f"{symbol}: field entry not understood: {text.spaced(item)[:80]}")
                )
            elif field.macro != "VMSTATE_END_OF_LIST":
                fields.append(field)
        subsections: list[SubsectionEntry] = []
        for item in _list_items(pairs["subsections"]) if "subsections" in pairs else []:
            if item.type == "null" or text.compact(item) in ("NULL", "0"):
                continue  # the list terminator
            entry = _identifier(item, text)
            if entry is None:
                diagnostics.append(
                    Diagnostic(
                        path,
                        text.line(item),
                        f"{symbol}: subsection entry not understood: {text.spaced(item)[:80]}",
                    )
                )
                continue
            subsections.append(SubsectionEntry(entry, text.line(item), masked.condition_at(item.start_byte)))
        descriptions.append(
            Description(
                symbol=symbol,
                path=path,
                line=text.line(name_node),
                column=text.column(name_node),
                name=string_value(pairs.get("name"), text),
                static="static" in storage,
                condition=masked.condition_at(declaration.start_byte),
                needed=callbacks.get("needed"),
                post_load=callbacks.get("post_load"),
                pre_load=callbacks.get("pre_load"),
                pre_save=callbacks.get("pre_save"),
                fields=tuple(fields),
                subsections=tuple(subsections),
                name_is_literal=pairs.get("name") is not None
                and pairs["name"].type in ("string_literal", "concatenated_string"),
                end_line=text.end_line(declaration),
            )
        )


def _field(item: Node, text: Text, masked: MaskedSource) -> VMStateField | None:
    if item.type == "initializer_list":
        return _hand_written_field(item, text, masked)
    if item.type != "call_expression":
        return None
    function = item.child_by_field_name("function")
    arguments = item.child_by_field_name("arguments")
    if function is None or arguments is None:
        return None
    macro = text.compact(function)
    if not macro.startswith("VMSTATE"):
        return None
    args = named_children(arguments)
    if macro == "VMSTATE_WITH_TMP" and len(args) == 3:
        # VMSTATE_WITH_TMP(KVMS390FLICState, KVMS390FLICStateMigTmp, tmp_vmsd): the
        # state's values go through a temporary the embedded description carries.
        state_type, _, tmp = (text.compact(a) for a in args)
        return VMStateField(macro, "", state_type, tmp, text.line(item), masked.condition_at(item.start_byte))
    struct_type = None
    if len(args) > 1 and not macro.startswith("VMSTATE_UNUSED"):
        # VMSTATE_UNUSED_BUFFER(test, version, size) names no type: its second
        # argument is a number, which taken for one gave hw/ppc/spapr.c's
        # descriptions the base "0".
        struct_type = text.compact(args[1]).removeprefix("struct").removeprefix("union") or None
    embeds = None
    for argument in args[1:]:
        name = _identifier(argument, text)
        # VMSTATE_STRUCT*(..., vmstate_foo, ...) embeds a description;
        # vmstate_info_* are the scalar codecs, not descriptions.
        if name and name.startswith("vmstate_") and not name.startswith("vmstate_info_"):
            embeds = name
            break
    return VMStateField(
        macro=macro,
        path=text.compact(args[0]) if args else "",
        struct_type=struct_type,
        embeds=embeds,
        line=text.line(item),
        condition=masked.condition_at(item.start_byte),
    )


def _hand_written_field(item: Node, text: Text, masked: MaskedSource) -> VMStateField | None:
    """`{ .name = "power_state", .info = &vmstate_powered_off, .offset = 0, ... }`;
    `{}` ends the list as VMSTATE_END_OF_LIST() does."""
    pairs = _designated(item, text)
    if not pairs:
        return VMStateField("VMSTATE_END_OF_LIST", "", None, None, text.line(item), None)
    codec = _identifier(pairs["info"], text) if "info" in pairs else None
    if codec is None:
        return None
    path, struct_type = string_value(pairs.get("name"), text) or "", None
    # tree-sitter-c reads offsetof(T, a.b) as an error node: match its text instead.
    offset = _OFFSETOF.fullmatch(text.compact(pairs["offset"])) if "offset" in pairs else None
    if offset is not None:
        struct_type, path = offset["type"], offset["member"]
    return VMStateField(
        "VMStateField", path, struct_type, None, text.line(item), masked.condition_at(item.start_byte), codec
    )
