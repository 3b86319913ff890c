"""Identifiers containing "vm" are found outside comments and literals only, whichever
line a comment or literal began on, and those in a #define are told apart."""

from __future__ import annotations

from analyzer.facts.model import Reference
from analyzer.facts.references import scan_references


def names(source: bytes) -> list[tuple[str, int, str]]:
    return [(r.name, r.line, r.kind) for r in scan_references(source)]


def test_block_comment_over_lines() -> None:
    source = b"""\
int a = vm_a; /* vm_hidden
   still vm_hidden
   */ int b = vm_b;
/*
 * vmstate_in_comment, opened two lines up
 */
int c = vmstate_c;
"""
    assert names(source) == [("vm_a", 1, "use"), ("vm_b", 3, "use"), ("vmstate_c", 7, "use")]


def test_line_comment() -> None:
    source = b"""\
int a = vm_a; // vm_note
// vm_whole_line
// a "/*" here opens no comment: vm_x
int b = vm_b;
"""
    assert names(source) == [("vm_a", 1, "use"), ("vm_b", 4, "use")]


def test_string_holding_comment_marks() -> None:
    source = b"""\
printf("/* vm_in_string"); int a = vm_a;
puts("// vm_s"); int b = vm_b;
const char *glob = "hw/*.c";
int c = vm_c;
"""
    assert names(source) == [("vm_a", 1, "use"), ("vm_b", 2, "use"), ("vm_c", 4, "use")]


def test_character_literal_of_a_double_quote() -> None:
    # Read as a string opening, '"' would hide vm_a up to the next '"'.
    source = b"char q = '\"'; int a = vm_a; char r = '\"';\n"
    assert names(source) == [("vm_a", 1, "use")]


def test_escaped_quote_in_string() -> None:
    source = b's = "say \\"vm_quoted\\" now"; t = vm_t;\n'
    assert names(source) == [("vm_t", 1, "use")]


def test_define_continued_with_backslashes() -> None:
    source = b"""\
#define VMSTATE_THING(f) \\
    /* vmstate_comment */ \\
    VMSTATE_STRUCT(f, S, 0, vmstate_thing, T)
int x = vmstate_x;
extern const VMStateDescription vmstate_decl;
int vm_before; static const VMStateDescription vmstate_dev = {
"""
    assert names(source) == [
        ("vmstate_thing", 3, "macro"),
        ("vmstate_x", 4, "use"),
        ("vmstate_decl", 5, "declaration"),
        ("vm_before", 6, "use"),
        ("vmstate_dev", 6, "declaration"),
    ]


def test_removed_comment_joins_its_neighbours() -> None:
    # Comments are removed, not replaced by a space, so "v" and "m" around one make a name.
    assert scan_references(b"int vm = 0;\nint v/**/m_joined;\n") == (
        Reference("vm", 1, "use"),
        Reference("vm_joined", 2, "use"),
    )
