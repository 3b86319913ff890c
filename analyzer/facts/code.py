"""Function facts: calls, assignments and returns, each with the guards it runs under."""

from __future__ import annotations

import re

from tree_sitter import Node

from ..profile import Profile
from ..record import Record
from ..syntax import Text, named_children
from .model import Assignment, Call, Condition, Expression, Function, Guard, Return

_CONSTANT = re.compile(r"^[A-Z][A-Z0-9_]*$")
_TYPE_WORDS = {"const", "volatile", "struct", "union", "enum", "static", "unsigned", "signed"}


class Variable(Record):
    key: str
    type_name: str | None  # struct or typedef name with pointers stripped
    alias: str | None = None  # state path the variable points into, e.g. X86CPU.env


class Scope(Record):
    """Names visible in one function: its locals (filled in as they are met), then the file's globals."""

    path: str
    function: str
    file_scope: dict[str, Variable]
    locals: dict[str, Variable]

    def lookup(self, name: str) -> Variable | None:
        return self.locals.get(name) or self.file_scope.get(name)


def declared_type(node: Node | None, text: Text) -> str | None:
    """Return the bare type name of a declaration's `type` node (`struct kvm_msrs` -> `kvm_msrs`)."""
    if node is None:
        return None
    words = [w for w in re.split(r"[\s*]+", text.spaced(node)) if w and w not in _TYPE_WORDS]
    return words[-1] if words else None


def declarator_name(node: Node | None) -> str | None:
    """Return the identifier a (possibly pointer/array/init) declarator declares."""
    while node is not None:
        if node.type in ("identifier", "field_identifier"):
            return node.text.decode() if node.text else None
        if node.type == "parenthesized_declarator":
            inner = named_children(node)
            node = inner[0] if inner else None
            continue
        node = node.child_by_field_name("declarator")
    return None


class FunctionExtractor:
    """Walks one function body, tracking the guards each statement runs under."""

    def __init__(self, text: Text, profile: Profile, scope: Scope) -> None:
        self.text = text
        self.profile = profile
        self.scope = scope
        self.calls: list[Call] = []
        self.assignments: list[Assignment] = []
        self.returns: list[Return] = []
        self.reads: set[str] = set()
        # By Node.id: an `if` that returns early has its condition read as a
        # guard of its body and of what follows, an assignment's left side both
        # as a target and an expression. The scope no longer changes meanwhile.
        self._expressions: dict[int, Expression] = {}
        self._conditions: dict[int, Condition] = {}
        self._leaves: dict[tuple[str, str], Expression] = {}

    # -- symbols -----------------------------------------------------------

    def _root_path(self, variable: Variable) -> str | None:
        if variable.alias:
            return variable.alias
        if variable.type_name:
            return self.profile.extraction_state_types.get(variable.type_name, variable.type_name)
        return None

    def member_path(self, node: Node) -> tuple[str | None, str | None]:
        """Return (root variable key, field key) for `a->b.c[i]`, `&x->y`, `*p`."""
        return self._member_path(node, None)

    def _member_path(self, node: Node, indices: list[Node] | None) -> tuple[str | None, str | None]:
        """member_path, also adding to `indices` the index and macro-argument nodes
        along the chain `a[i]->b.c(j)` up to the first parenthesis (one walk, not two)."""
        chain: list[str] = []
        current: Node | None = node
        while current is not None:
            kind = current.type
            if kind == "field_expression":
                member = current.child_by_field_name("field")
                if member is not None:
                    chain.append(self.text.compact(member))
                current = current.child_by_field_name("argument")
            elif kind == "subscript_expression":
                if indices is not None:
                    index = current.child_by_field_name("index")
                    if index is not None:
                        indices.append(index)
                current = current.child_by_field_name("argument")
            elif kind == "call_expression":
                # `env->xmm_regs[i].ZMM_Q(2)`: an accessor macro on a member.
                function = current.child_by_field_name("function")
                if indices is not None:
                    arguments = current.child_by_field_name("arguments")
                    if arguments is not None:
                        indices.extend(arguments.named_children)
                accessor = self._accessor(function)
                if accessor is not None:
                    return None, ".".join([accessor, *reversed(chain)])
                if function is None or function.type != "field_expression":
                    return None, None
                current = function
            elif kind in ("pointer_expression", "parenthesized_expression", "cast_expression"):
                inner = current.child_by_field_name("argument") or current.child_by_field_name("value")
                if inner is None:
                    # Indices inside parentheses were never read as the chain's.
                    indices = None
                    children = named_children(current)
                    inner = children[-1] if children else None
                current = inner
            elif kind == "identifier":
                name = self.text.compact(current)
                variable = self.scope.lookup(name)
                if variable is None:
                    return f"var:{name}", None
                root = self._root_path(variable)
                if root is None or not (chain or variable.alias):
                    # A plain variable is a symbol, not a struct member.
                    return variable.key, None
                return variable.key, ".".join([root, *reversed(chain)])
            else:
                return None, None
        return None, None

    def _accessor(self, function: Node | None) -> str | None:
        """The state path a profile accessor call returns (`cpu_fpr_ptr(env, i)`)."""
        if function is None or function.type != "identifier":
            return None
        return self.profile.accessors.get(self.text.compact(function))

    def expression(self, node: Node | None) -> Expression:
        """Summarise what an expression reads."""
        if node is None:
            return Expression(text="")
        if not node.child_count:
            # A leaf (a name, a number: most arguments) reads what its text says.
            leaf = (node.type, self.text.raw(node))
            known = self._leaves.get(leaf)
            if known is None:
                known = self._leaves[leaf] = self._expression(node)
            return known
        known = self._expressions.get(node.id)
        if known is None:
            known = self._expressions[node.id] = self._expression(node)
        return known

    def _expression(self, node: Node) -> Expression:
        subjects: set[str] = set()
        fields: set[str] = set()
        calls: list[str] = []
        constants: list[str] = []
        stack = [node]
        while stack:
            current = stack.pop()
            kind = current.type
            if kind in ("field_expression", "subscript_expression") or (
                kind == "pointer_expression" and current.child_by_field_name("argument") is not None
            ):
                indices: list[Node] = []
                root, path = self._member_path(current, indices)
                if root or path:
                    if root:
                        subjects.add(root)
                    if path:
                        fields.add(path)
                    # Only the indices can read further symbols; the chain's own
                    # prefixes (`cpu->env`) must not count as reads of their own.
                    stack.extend(indices)
                    continue
            if kind == "call_expression":
                function = current.child_by_field_name("function")
                if function is not None and function.type == "identifier":
                    name = self.text.compact(function)
                    calls.append(name)
                    subjects.add(f"call:{name}")
                    accessor = self._accessor(function)
                    if accessor is not None:
                        fields.add(accessor)
                    arguments = current.child_by_field_name("arguments")
                    if arguments is not None:
                        stack.extend(arguments.named_children)
                    continue
                if function is not None and function.type == "field_expression":
                    root, path = self.member_path(current)
                    if path:
                        fields.add(path)
                        if root:
                            subjects.add(root)
                        continue
            if kind == "identifier":
                name = self.text.compact(current)
                variable = self.scope.lookup(name)
                if variable is not None:
                    subjects.add(variable.key)
                    root = self._root_path(variable)
                    if root and variable.alias:
                        fields.add(root)
                elif _CONSTANT.match(name):
                    constants.append(name)
                else:
                    subjects.add(f"var:{name}")
                continue
            if kind == "sizeof_expression":
                continue
            stack.extend(current.named_children)
        for path in fields:
            subjects.add(f"field:{path}")
        self.reads.update(fields)
        return Expression(
            text=self.text.spaced(node),
            subjects=tuple(sorted(subjects)),
            fields=tuple(sorted(fields)),
            calls=tuple(calls),
            constants=tuple(constants),
        )

    def condition(self, node: Node | None) -> Condition:
        """Split a condition into and/or/not over atoms."""
        if node is None:
            return Condition(op="atom", text="", atom=Expression(text=""))
        known = self._conditions.get(node.id)
        if known is None:
            known = self._conditions[node.id] = self._condition(node)
        return known

    def _condition(self, node: Node) -> Condition:
        while node.type == "parenthesized_expression" and len(named_children(node)) == 1:
            node = named_children(node)[0]
        text = self.text.spaced(node)
        if node.type == "unary_expression" and self.text.raw(node).lstrip().startswith("!"):
            operand = node.child_by_field_name("argument")
            return Condition(op="not", text=text, operands=(self.condition(operand),))
        if node.type == "binary_expression":
            operator = node.child_by_field_name("operator")
            op = operator.type if operator is not None else ""
            if op in ("&&", "||"):
                left = self.condition(node.child_by_field_name("left"))
                right = self.condition(node.child_by_field_name("right"))
                return Condition(op="and" if op == "&&" else "or", text=text, operands=(left, right))
        return Condition(op="atom", text=text, atom=self.expression(node))

    # -- statements --------------------------------------------------------

    def function_body(self, body: Node) -> None:
        self.block(named_children(body), ())

    def block(self, statements: list[Node], guards: tuple[Guard, ...]) -> None:
        current = guards
        for statement in statements:
            self.statement(statement, current)
            early = self._early_return_guard(statement)
            if early is not None:
                current = (*current, early)

    def _early_return_guard(self, statement: Node) -> Guard | None:
        """`if (!has_xsave) { return ...; }` guards every later statement of the block.

        Error propagation (`if (ret < 0) { return ret; }`) is not a guard worth
        reporting: the returned value is the tested one.
        """
        if statement.type != "if_statement" or statement.child_by_field_name("alternative"):
            return None
        consequence = statement.child_by_field_name("consequence")
        exit_statement = consequence
        if consequence is not None and consequence.type == "compound_statement":
            inner = named_children(consequence)
            exit_statement = inner[-1] if inner else None
        if exit_statement is not None and exit_statement.type == "continue_statement":
            # `if (!csr_cfg->supported) { continue; }` guards the rest of a loop body.
            condition = self.condition(statement.child_by_field_name("condition"))
            return Guard(condition, holds=False, kind="early-return", line=self.text.line(statement))
        if exit_statement is None or exit_statement.type != "return_statement":
            return None
        condition = self.condition(statement.child_by_field_name("condition"))
        returned = named_children(exit_statement)
        if returned:
            value = self.expression(returned[0])
            tested = {s for atom in condition.atoms() for s in atom.subjects}
            if tested & set(value.subjects) and not any(s.startswith("call:") for s in tested & set(value.subjects)):
                return None
        return Guard(condition, holds=False, kind="early-return", line=self.text.line(statement))

    def statement(self, node: Node, guards: tuple[Guard, ...]) -> None:
        kind = node.type
        if kind == "compound_statement":
            self.block(named_children(node), guards)
        elif kind == "if_statement":
            condition_node = node.child_by_field_name("condition")
            self.scan(condition_node, guards)
            condition = self.condition(condition_node)
            consequence = node.child_by_field_name("consequence")
            if consequence is not None:
                self.statement(consequence, (*guards, Guard(condition, True, "if", self.text.line(node))))
            alternative = node.child_by_field_name("alternative")
            if alternative is not None:
                else_guards = (*guards, Guard(condition, False, "else", self.text.line(alternative)))
                for child in named_children(alternative):
                    self.statement(child, else_guards)
        elif kind == "switch_statement":
            value = node.child_by_field_name("condition")
            self.scan(value, guards)
            body = node.child_by_field_name("body")
            if body is not None:
                self.switch_body(self.condition(value), named_children(body), guards)
        elif kind in ("for_statement", "while_statement", "do_statement"):
            for child in named_children(node):
                if child.type.endswith("statement"):
                    self.statement(child, guards)
                else:
                    self.scan(child, guards)
        elif kind == "return_statement":
            returned = named_children(node)
            summary = self.expression(returned[0]) if returned else Expression(text="")
            self.returns.append(Return(summary, guards, self.text.line(node)))
            for child in returned:
                self.scan(child, guards)
        elif kind == "labeled_statement":
            for child in named_children(node):
                if child.type != "statement_identifier":
                    self.statement(child, guards)
        elif kind == "declaration":
            self.declaration(node, guards)
        elif kind == "case_statement":
            self.switch_body(None, [node], guards)
        else:
            self.scan(node, guards)

    def switch_body(self, value: Condition | None, cases: list[Node], guards: tuple[Guard, ...]) -> None:
        pending_labels: list[str] = []
        for case in cases:
            if case.type != "case_statement":
                self.statement(case, guards)
                continue
            label_node = case.child_by_field_name("value")
            label = self.text.spaced(label_node) if label_node is not None else "default"
            pending_labels.append(label)
            body = [c for c in named_children(case) if c is not label_node]
            if not body:
                continue  # falls through to the next label
            case_guards = guards
            if value is not None:
                case_guards = (
                    *guards,
                    Guard(value, True, "case", self.text.line(case), label=" | ".join(pending_labels)),
                )
            self.block(body, case_guards)
            pending_labels = []

    def declaration(self, node: Node, guards: tuple[Guard, ...]) -> None:
        for declarator in node.children_by_field_name("declarator"):
            if declarator.type != "init_declarator":
                continue
            name = declarator_name(declarator)
            value = declarator.child_by_field_name("value")
            if name is None or value is None:
                continue
            variable = self.scope.lookup(name)
            key = variable.key if variable else f"var:{name}"
            self.assignments.append(
                Assignment(
                    target=key,
                    target_text=name,
                    value=self.expression(value),
                    guards=guards,
                    line=self.text.line(declarator),
                    column=self.text.column(declarator),
                )
            )
            self.scan(value, guards)

    def scan(self, node: Node | None, guards: tuple[Guard, ...]) -> None:
        """Record calls and assignments inside an expression or simple statement."""
        if node is None:
            return
        kind = node.type
        if kind == "conditional_expression":
            condition_node = node.child_by_field_name("condition")
            self.scan(condition_node, guards)
            condition = self.condition(condition_node)
            line = self.text.line(node)
            self.scan(node.child_by_field_name("consequence"), (*guards, Guard(condition, True, "ternary", line)))
            self.scan(node.child_by_field_name("alternative"), (*guards, Guard(condition, False, "ternary", line)))
            return
        if kind == "call_expression":
            function = node.child_by_field_name("function")
            arguments = node.child_by_field_name("arguments")
            argument_nodes = named_children(arguments) if arguments is not None else []
            if function is not None and function.type == "identifier":
                self.calls.append(
                    Call(
                        callee=self.text.compact(function),
                        arguments=tuple(self.expression(a) for a in argument_nodes),
                        guards=guards,
                        line=self.text.line(node),
                        column=self.text.column(node),
                    )
                )
            for argument in argument_nodes:
                if argument.child_count:
                    self.scan(argument, guards)
            return
        if kind == "assignment_expression":
            left = node.child_by_field_name("left")
            right = node.child_by_field_name("right")
            if left is not None:
                target = self.expression(left)
                root, path = self.member_path(left)
                if path:
                    key = f"field:{path}"
                elif left.type == "identifier":
                    variable = self.scope.lookup(self.text.compact(left))
                    key = variable.key if variable else f"var:{self.text.compact(left)}"
                else:
                    key = root or target.text
                self.assignments.append(
                    Assignment(
                        target=key,
                        target_text=target.text,
                        value=self.expression(right),
                        guards=guards,
                        line=self.text.line(node),
                        column=self.text.column(node),
                    )
                )
            self.scan(right, guards)
            return
        for child in node.named_children:
            if child.child_count:  # a leaf (a name, a comment) holds no call
                self.scan(child, guards)


def collect_locals(function: Node, text: Text, scope: Scope, profile: Profile) -> tuple[str, ...]:
    """Record parameters and local declarations with their types and aliases; return the parameter keys."""
    prefix = f"local:{scope.path}:{scope.function}:"
    parameter_keys: list[str] = []
    declarator = function.child_by_field_name("declarator")
    while declarator is not None and declarator.type != "function_declarator":
        declarator = declarator.child_by_field_name("declarator")
    parameters = declarator.child_by_field_name("parameters") if declarator is not None else None
    if parameters is not None:
        for parameter in parameters.named_children:
            if parameter.type != "parameter_declaration":
                continue
            name = declarator_name(parameter.child_by_field_name("declarator"))
            if name:
                type_name = declared_type(parameter.child_by_field_name("type"), text)
                scope.locals[name] = Variable(prefix + name, type_name)
                parameter_keys.append(prefix + name)
    body = function.child_by_field_name("body")
    if body is None:
        return tuple(parameter_keys)
    extractor = FunctionExtractor(text, profile, scope)
    stack = [body]
    while stack:
        current = stack.pop()
        if current.type == "declaration":
            type_name = declared_type(current.child_by_field_name("type"), text)
            for declarator_node in current.children_by_field_name("declarator"):
                name = declarator_name(declarator_node)
                if not name:
                    continue
                alias = None
                value = declarator_node.child_by_field_name("value")
                if value is not None and type_name not in profile.unit_state_types:
                    _, alias = extractor.member_path(value)
                scope.locals[name] = Variable(prefix + name, type_name, alias)
        elif current.type not in _NO_DECLARATIONS_INSIDE:
            stack.extend(current.named_children)
    return tuple(parameter_keys)


# Subtrees where C puts no declaration (bar GNU statement expressions, which
# QEMU keeps to macros): collect_locals need not walk them, which is most of a body.
_NO_DECLARATIONS_INSIDE = frozenset(
    {
        "expression_statement",
        "return_statement",
        "call_expression",
        "argument_list",
        "binary_expression",
        "assignment_expression",
        "field_expression",
        "subscript_expression",
        "string_literal",
        "concatenated_string",
        "parenthesized_expression",
    }
)


def extract_function(
    node: Node, text: Text, path: str, profile: Profile, file_scope: dict[str, Variable], condition: str | None
) -> Function | None:
    """Return the facts of one function definition."""
    declarator = node.child_by_field_name("declarator")
    name = declarator_name(declarator)
    body = node.child_by_field_name("body")
    if name is None or body is None:
        return None
    scope = Scope(path=path, function=name, file_scope=file_scope, locals={})
    parameters = collect_locals(node, text, scope, profile)
    extractor = FunctionExtractor(text, profile, scope)
    extractor.function_body(body)
    storage = [c for c in node.children if c.type == "storage_class_specifier"]
    return Function(
        name=name,
        path=path,
        line=text.line(node),
        end_line=text.end_line(node),
        static=any(text.compact(s) == "static" for s in storage),
        condition=condition,
        parameters=parameters,
        calls=tuple(extractor.calls),
        assignments=tuple(extractor.assignments),
        returns=tuple(extractor.returns),
        reads=tuple(sorted(extractor.reads)),
    )
