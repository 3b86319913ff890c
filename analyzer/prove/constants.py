"""Integer values of the tree's `#define`s: MSR indices, KVM_CAP_* numbers.

The guest writes the MSR a put site names and the interposer hides the
probe's constant, so both come from the analysed tree's own headers (an MSR
renumbered in a fork is followed). Only integer arithmetic on literals and
other defines is evaluated; anything else has no value.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

_DEFINE = re.compile(rb"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+([^\n]*?)[ \t]*(?:/[/*][^\n]*)?$", re.MULTILINE)
_INTEGER_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\b")
_BINARY: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
    ast.FloorDiv: operator.floordiv,
}
_OPERATORS = tuple(_BINARY)


def read_defines(tree: Path, headers: Iterable[str]) -> dict[str, str]:
    """`NAME -> replacement text` of the object-like defines in those of `headers` the tree has."""
    defines: dict[str, str] = {}
    for header in headers:
        try:
            text = (tree / header).read_bytes()
        except OSError:
            continue
        for name, body in _DEFINE.findall(text):
            defines.setdefault(name.decode(), body.decode("utf-8", "replace"))
    return defines


def evaluate(expression: str, defines: Mapping[str, str], variables: Mapping[str, int] | None = None) -> int | None:
    """The value of a C integer expression, or None when it is not one."""
    return _evaluate(expression, defines, dict(variables or {}), depth=0)


def _evaluate(expression: str, defines: Mapping[str, str], variables: dict[str, int], depth: int) -> int | None:
    if depth > 16:
        return None
    text = _INTEGER_SUFFIX.sub(
        lambda m: str(int(m[1], 0) if not re.fullmatch(r"0\d+", m[1]) else int(m[1], 8)), expression
    )
    text = text.replace("(uint64_t)", "").replace("(uint32_t)", "")
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None
    return _value(node, defines, variables, depth)


def _value(node: ast.expr, defines: Mapping[str, str], variables: dict[str, int], depth: int) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in variables:
            return variables[node.id]
        if node.id in defines:
            return _evaluate(defines[node.id], defines, variables, depth + 1)
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert | ast.USub | ast.UAdd):
        operand = _value(node.operand, defines, variables, depth)
        if operand is None:
            return None
        if isinstance(node.op, ast.Invert):
            return ~operand & (1 << 64) - 1
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, _OPERATORS):
        left = _value(node.left, defines, variables, depth)
        right = _value(node.right, defines, variables, depth)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.LShift | ast.RShift) and not 0 <= right < 64:
            return None
        if isinstance(node.op, ast.FloorDiv) and right == 0:
            return None
        return _BINARY[type(node.op)](left, right)
    return None
