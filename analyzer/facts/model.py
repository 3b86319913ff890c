"""Immutable records extracted from one C file.

Facts make no decisions: they say what the code contains (a description, a
call under some conditions, an assignment), never whether it matters. The
syntax tree is dropped once they are built.

Symbols referenced by expressions are *keys*, strings that are equal across
files when they denote the same thing:

- `local:<path>:<function>:<name>`  a parameter or local variable
- `var:<path>:<name>`               a file-static variable
- `var:<name>`                      a global variable
- `call:<name>`                     the value returned by a function
- `field:<Type>.<member>...`        a struct member, rooted at its struct type
                                    (`CPUX86State` is folded into `X86CPU.env`
                                    by the target profile)

Records are named tuples, not dataclasses: a tree gives hundreds of
thousands, built by the extractor and read back from the cache on every
run, and tuples are built and unpickled several times faster; their classes
are also made several times faster, at every start. So compare records of
one type only (a tuple equals any tuple of the same items), and change one
with `_replace`.
"""

from __future__ import annotations

import re

from ..record import Record

# `!flag`, `!env->nested_state`, `!kvm_has_x(CAP)`: a negated plain operand or call.
_NEGATED_OPERAND = re.compile(r"!\s*[A-Za-z_]\w*(?:\s*(?:->|\.)\s*\w+)*(?:\([^()]*\))?")


class Expression(Record):
    """What an expression reads: its text, symbol keys, called functions, constants."""

    text: str
    subjects: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    constants: tuple[str, ...] = ()


class Condition(Record):
    """A boolean condition as a tree of `and`/`or`/`not` over atoms."""

    op: str  # "atom", "not", "and", "or"
    text: str
    operands: tuple[Condition, ...] = ()
    atom: Expression | None = None

    def leaves(self) -> tuple[Condition, ...]:
        """The atom conditions, left to right."""
        if self.op == "atom":
            return (self,)
        return tuple(leaf for operand in self.operands for leaf in operand.leaves())

    def atoms(self) -> tuple[Expression, ...]:
        """What each atom reads."""
        return tuple(leaf.atom for leaf in self.leaves() if leaf.atom is not None)


class Guard(Record):
    """Code runs only when `condition` evaluates to `holds`.

    kind is `if`, `else`, `early-return` (an earlier `if (c) return;`),
    `ternary` or `case` (then `label` is the case constant).
    """

    condition: Condition
    holds: bool
    kind: str
    line: int
    label: str | None = None

    def describe(self) -> str:
        text = self.condition.text
        if self.kind == "case":
            return f"{text} == {self.label}"
        if self.holds:
            return text
        if _NEGATED_OPERAND.fullmatch(text):
            return text[1:]  # !(!has_xsave) reads better as has_xsave
        return f"!({text})"


class Call(Record):
    callee: str
    arguments: tuple[Expression, ...]
    guards: tuple[Guard, ...]
    line: int
    column: int


class Return(Record):
    value: Expression  # empty text for a bare `return;`
    guards: tuple[Guard, ...]
    line: int


class Assignment(Record):
    target: str  # symbol key written
    target_text: str
    value: Expression
    guards: tuple[Guard, ...]
    line: int
    column: int


class Function(Record):
    name: str
    path: str
    line: int
    end_line: int
    static: bool
    condition: str | None
    parameters: tuple[str, ...] = ()  # parameter keys, in order
    calls: tuple[Call, ...] = ()
    assignments: tuple[Assignment, ...] = ()
    returns: tuple[Return, ...] = ()
    reads: tuple[str, ...] = ()  # every field key the body mentions


class VMStateField(Record):
    macro: str
    path: str  # first argument, whitespace removed
    struct_type: str | None  # second argument: the type `path` is relative to
    embeds: str | None  # description embedded by VMSTATE_STRUCT* and friends
    line: int
    condition: str | None
    # A hand-written `{ .name = "power_state", .info = &vmstate_powered_off, ... }`
    # names the VMStateInfo that reads and writes it; path is then its offsetof()
    # member, or its .name when it spans the whole opaque (`.offset = 0`).
    codec: str | None = None


class Codec(Record):
    """A `VMStateInfo` of hand-written get/put functions (`vmstate_powered_off`)."""

    symbol: str
    get: str | None
    put: str | None
    path: str
    line: int


class SubsectionEntry(Record):
    symbol: str
    line: int
    condition: str | None


class Description(Record):
    symbol: str
    path: str
    line: int
    column: int
    name: str | None
    static: bool
    condition: str | None
    needed: str | None = None
    post_load: str | None = None
    pre_load: str | None = None
    pre_save: str | None = None
    fields: tuple[VMStateField, ...] = ()
    subsections: tuple[SubsectionEntry, ...] = ()
    name_is_literal: bool = True  # False for `.name = TYPE_FOO`: the text is a macro, not the name
    end_line: int = 0  # last line of the initializer: references up to here are the description's own


class Reference(Record):
    """An identifier that may name a VMStateDescription, outside comments and strings."""

    name: str
    line: int
    kind: str  # "use", "declaration" (`extern const VMStateDescription x;`) or "macro" (in a #define)


class PropertyDefinition(Record):
    """`DEFINE_PROP_BOOL("x-migrate-smi-count", X86CPU, migrate_smi_count, true)`."""

    name: str
    struct_type: str
    member: str
    path: str
    line: int


class CompatEntry(Record):
    driver: str
    property: str
    value: str
    line: int


class CompatArray(Record):
    """A `GlobalProperty name[] = { ... }` table of machine-type compat properties."""

    symbol: str
    path: str
    line: int
    entries: tuple[CompatEntry, ...]


class MachineDefinition(Record):
    """A machine type registered by a DEFINE_*_MACHINE macro."""

    name: str
    options_function: str
    path: str
    line: int


class Diagnostic(Record):
    """A region of the tree the analyzer could not understand, or other input trouble."""

    path: str
    line: int
    message: str
    # True when it bears on the whole file (an unbalanced #if shifts the conditions
    # of all that follows; a truncated or undecodable file), not just on `line`.
    whole_file: bool = False


class RequiredCapability(Record):
    """`KVM_CAP_INFO(XSAVE)` in a `KVMCapabilityInfo` table: kvm_init() fails without it."""

    name: str  # KVM_CAP_XSAVE
    table: str  # kvm_arch_required_capabilities
    path: str
    line: int


class TableEntry(Record):
    """One entry of a register table: `KVM_CSR_CFG("senvcfg", senvcfg, RISCV_CSR_REG(senvcfg))`."""

    macro: str
    member: str  # the state member the entry names, e.g. senvcfg
    table: str  # the array it initialises, e.g. kvm_csr_cfgs
    path: str
    line: int


class FileFacts(Record):
    path: str
    descriptions: tuple[Description, ...] = ()
    codecs: tuple[Codec, ...] = ()
    functions: tuple[Function, ...] = ()
    properties: tuple[PropertyDefinition, ...] = ()
    compat_arrays: tuple[CompatArray, ...] = ()
    machines: tuple[MachineDefinition, ...] = ()
    table_entries: tuple[TableEntry, ...] = ()
    required_capabilities: tuple[RequiredCapability, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    references: tuple[Reference, ...] = ()
