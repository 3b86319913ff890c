"""Parse one file, extract all its facts, and drop the syntax tree."""

from __future__ import annotations

import re
from collections.abc import Sequence

from tree_sitter import Node

from ..preprocess import MaskedSource, description_spans, mask, property_spans
from ..profile import Profile
from ..syntax import Text, error_nodes, parse_runs
from .code import Variable, declarator_name, declared_type, extract_function
from .model import Description, Diagnostic, FileFacts, Function, RequiredCapability, TableEntry
from .properties import extract_compat_arrays, extract_machines, extract_properties
from .references import scan_references
from .reuse import Reuse, node_key, scope_digest
from .vmstate import extract_codecs, extract_descriptions

_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _file_scope(root: Node, text: Text, path: str) -> dict[str, Variable]:
    """Variables declared at file scope, keyed so that statics stay file-local."""
    scope: dict[str, Variable] = {}
    for declaration in root.named_children:
        if declaration.type != "declaration":
            continue
        static = any(text.compact(c) == "static" for c in declaration.children if c.type == "storage_class_specifier")
        type_name = declared_type(declaration.child_by_field_name("type"), text)
        for declarator in declaration.children_by_field_name("declarator"):
            if declarator.type == "function_declarator":
                continue
            name = declarator_name(declarator)
            if name:
                key = f"var:{path}:{name}" if static else f"var:{name}"
                scope[name] = Variable(key, type_name)
    return scope


def _table_entries(root: Node, text: Text, path: str, profile: Profile) -> list[TableEntry]:
    """Entries of the profile's register tables in file-scope initializers."""
    wanted = {t.entry_macro: t.member_argument for t in profile.register_tables}
    if not wanted:
        return []
    found: list[TableEntry] = []
    for declaration in root.named_children:
        if declaration.type != "declaration":
            continue
        table = next((declarator_name(d) for d in declaration.children_by_field_name("declarator")), None) or ""
        stack = list(declaration.named_children)
        while stack:
            node = stack.pop()
            if node.type == "call_expression":
                function = node.child_by_field_name("function")
                arguments = node.child_by_field_name("arguments")
                macro = text.compact(function) if function is not None else ""
                if macro in wanted and arguments is not None:
                    values = arguments.named_children
                    index = wanted[macro]
                    if index < len(values):
                        member = text.compact(values[index])
                        found.append(TableEntry(macro, member, table, path, text.line(node)))
                    continue
            stack.extend(node.named_children)
    return sorted(found, key=lambda e: (e.line, e.member))


_CAP_INFO = re.compile(r"KVM_CAP_INFO\(\s*(\w+)\s*\)")


def _required_capabilities(root: Node, text: Text, path: str) -> list[RequiredCapability]:
    """The capabilities of the file's `KVMCapabilityInfo` tables, which kvm_init()
    checks (kvm_check_extension_list) and refuses to start without."""
    found: list[RequiredCapability] = []
    for declaration in root.named_children:
        if declaration.type != "declaration" or declared_type(declaration.child_by_field_name("type"), text) != (
            "KVMCapabilityInfo"
        ):
            continue
        table = next((declarator_name(d) for d in declaration.children_by_field_name("declarator")), None) or ""
        body = text.raw(declaration)
        for match in _CAP_INFO.finditer(body):
            line = text.line(declaration) + body.count("\n", 0, match.start())
            found.append(RequiredCapability(f"KVM_CAP_{match.group(1)}", table, path, line))
    return found


def _enclosing_symbol(node: Node, text: Text) -> str:
    current: Node | None = node
    while current is not None and current.parent is not None and current.parent.parent is not None:
        current = current.parent
    if current is None:
        return "file scope"
    if current.type in ("function_definition", "declaration"):
        for declarator in current.children_by_field_name("declarator"):
            name = declarator_name(declarator)
            if name:
                return name
    return "file scope"


def _by_name(definitions: list[Node]) -> dict[str, Node]:
    by_name: dict[str, Node] = {}
    for node in definitions:
        declarator = node.child_by_field_name("declarator")
        name = declarator_name(declarator) if declarator is not None else None
        if name:
            by_name.setdefault(name, node)
    return by_name


def _called_from(roots: set[str], definitions: list[Node], text: Text) -> list[Node]:
    """The definitions named in `roots` and those they call, directly or not, in file order."""
    by_name = _by_name(definitions)
    wanted: set[str] = set()
    stack = [name for name in roots if name in by_name]
    while stack:
        name = stack.pop()
        if name in wanted:
            continue
        wanted.add(name)
        stack.extend(c for c in _callees(by_name[name], text) if c in by_name and c not in wanted)
    chosen = {id(by_name[name]) for name in wanted}  # Nodes by identity: one lookup per definition
    return [node for node in definitions if id(node) in chosen]


def _calling(calls: frozenset[str], definitions: list[Node], text: Text) -> set[str]:
    """Names of the definitions that call one of `calls`, directly or through others of the file."""
    # Walked back from `calls` along who-calls-whom: once per call, however long the chains.
    callers: dict[str, list[str]] = {}
    for name, node in _by_name(definitions).items():
        for callee in _callees(node, text):
            callers.setdefault(callee, []).append(name)
    calling: set[str] = set()
    stack = [caller for call in calls for caller in callers.get(call, ())]
    while stack:
        name = stack.pop()
        if name not in calling:
            calling.add(name)
            stack.extend(callers.get(name, ()))
    return calling


def _callees(function: Node, text: Text) -> set[str]:
    """Identifiers a function body calls, or mentions (a callback passed by name)."""
    body = function.child_by_field_name("body")
    return set(_IDENTIFIER.findall(text.raw(body))) if body is not None else set()


# Which facts each role of file gives; the rest would be parsed for nothing
# (target/i386/cpu.c is read for its properties, not its 300 functions).
# A profile's [cpu_model] check function is looked up in its "cpu_model" files.
_SPANS_OF = {"inventory": description_spans, "properties": property_spans}
FUNCTION_ROLES = frozenset({"vmstate", "kvm", "helpers", "accel", "machines", "cpu_model"})


def extract_file(
    path: str, source: bytes, profile: Profile, role: str | None = None, reuse: Reuse | None = None
) -> FileFacts:
    """Return the facts of one file; `path` is relative to the tree root, `role` selects
    which extractors run (None: all of them). With `reuse`, the functions and
    descriptions its last extraction gave are taken back where nothing they depend on changed."""
    if role == "references":
        # A header or device file with no description: only the names it mentions.
        return FileFacts(path=path, references=scan_references(source))
    # The inventory and a CPU's properties file need a few definitions each.
    masked = mask(source, _SPANS_OF.get(role or ""))
    # Spans come in runs (below); a file read whole, or in few spans, is one tree.
    runs = [(tree.root_node, spans) for tree, spans in parse_runs(masked.text, masked.spans)]
    root = runs[0][0]
    text = Text(source, masked.text if masked.spans is None else None)
    diagnostics = [
        Diagnostic(path, line, "unbalanced preprocessor conditional", whole_file=True)
        for line in masked.unbalanced_lines
    ]
    if masked.unclosed is not None:
        line, count = masked.unclosed
        diagnostics.append(
            Diagnostic(
                path,
                line,
                f"file ends with {count} bracket(s) still open (truncated?); read up to its end",
                whole_file=True,
            )
        )
    # A file read in spans (description lists of ~600 device files, a cpu.c's
    # properties) has no say on the rest: parse errors there are not reported.
    for error in error_nodes(root) if masked.spans is None else ():
        snippet = " ".join(text.raw(error).split())[:60] or "(missing token)"
        diagnostics.append(
            Diagnostic(path, text.line(error), f"could not parse `{snippet}` in {_enclosing_symbol(error, text)}")
        )
    try:
        source.decode("utf-8")
    except UnicodeDecodeError as undecodable:
        line = source.count(b"\n", 0, undecodable.start) + 1
        diagnostics.append(Diagnostic(path, line, "not valid UTF-8; read with replacement characters", whole_file=True))
    descriptions: list[Description] = []
    description_diagnostics: list[Diagnostic] = []
    for run_root, _ in runs if role in (None, "vmstate", "inventory") else ():
        found, found_diagnostics = extract_descriptions(run_root, text, masked, path, reuse)
        descriptions += found
        description_diagnostics += found_diagnostics
    codecs = extract_codecs(root, text, path) if role in (None, "vmstate") else []
    machines = extract_machines(root, text, path, profile) if role in (None, "machines") else []
    functions: list[Function] = []
    if role is None or role in FUNCTION_ROLES:
        file_scope = _file_scope(root, text, path)
        definitions = [n for n in root.named_children if n.type == "function_definition"]
        if role == "vmstate":
            # A description file (spapr.c has 178 functions) is read for what its
            # descriptions call back (needed, post_load, ...) and what those call.
            roots = {c for d in descriptions for c in (d.needed, d.post_load, d.pre_load, d.pre_save) if c}
            roots |= {f for c in codecs for f in (c.get, c.put) if f}
            definitions = _called_from(roots, definitions, text)
        elif role == "machines":
            # A machines file (hw/riscv/virt.c has 100 functions) is read for the
            # calls from a machine type's options function to compat_props_add()
            # (CompatIndex): those functions, what they call, and what leads to such a call.
            roots = {m.options_function for m in machines} | _calling(profile.compat_add_calls, definitions, text)
            definitions = _called_from(roots, definitions, text)
        elif role == "cpu_model":
            # Read for where the [cpu_model] check function is defined.
            check = profile.cpu_model.check_function if profile.cpu_model else None
            definitions = [node for name, node in _by_name(definitions).items() if name == check]
        scope = scope_digest(file_scope) if reuse is not None else b""
        for node in definitions:
            condition = masked.condition_at(node.start_byte)
            key = None
            if reuse is not None and not node.has_error:  # error recovery may read the same bytes otherwise
                key = node_key(node, source, masked.text, text.column(node), condition, scope)
                if (known := reuse.function(key, text.line(node))) is not None:
                    functions.append(known)
                    continue
            try:
                function = extract_function(node, text, path, profile, file_scope, condition)
            except RecursionError:
                # The walk recurses once per nesting level: hundreds of nested
                # blocks or parentheses (generated code) exceed Python's stack.
                # Unread, it may be a function any path needs: always shown.
                name = declarator_name(node.child_by_field_name("declarator")) or "a function"
                message = f"{name}: nested too deeply to read; skipped"
                diagnostics.append(Diagnostic(path, text.line(node), message, whole_file=True))
                continue
            if function is not None:
                functions.append(function)
                if reuse is not None and key is not None:
                    reuse.made_function(key, function)
    return FileFacts(
        path=path,
        descriptions=tuple(descriptions),
        codecs=tuple(codecs),
        functions=tuple(functions),
        # A device's common file defines its qdev properties beside its description.
        properties=tuple(
            p
            for run_root, spans in runs
            for p in extract_properties(run_root, text, path, profile, _property_spans(masked, spans, role))
        )
        if role in (None, "properties", "vmstate")
        else (),
        compat_arrays=tuple(extract_compat_arrays(root, text, path)) if role in (None, "compat") else (),
        machines=tuple(machines),
        table_entries=tuple(_table_entries(root, text, path, profile)) if role in (None, "kvm") else (),
        required_capabilities=tuple(_required_capabilities(root, text, path)) if role in (None, "kvm", "accel") else (),
        diagnostics=tuple(sorted({*diagnostics, *description_diagnostics}, key=lambda d: (d.line, d.message))),
        references=scan_references(source) if role in (None, "vmstate", "inventory") else (),
    )


def _property_spans(
    masked: MaskedSource, spans: Sequence[tuple[int, int]] | None, role: str | None
) -> Sequence[tuple[int, int]]:
    """Where a file's qdev properties are: its Property definitions (all a
    properties file is parsed in, `spans` of them in this tree)."""
    if role == "properties" and spans is not None:
        return spans
    return property_spans(masked.text)
