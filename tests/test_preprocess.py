"""Masking keeps every byte offset and records preprocessor conditions."""

from __future__ import annotations

from analyzer.preprocess import mask
from analyzer.syntax import error_nodes, parse

SOURCE = b"""\
static const VMStateDescription *list[] = {
    &a,
#ifdef TARGET_X86_64
    &b,
#else
    &c,
#endif
#if 0
    &dead,
#endif
    NULL
};
int f(int x)
{
    switch (x) {
    case A ... B:
        return offsetof(struct s, m.n[0]);
    }
    return 0;
}
"""


def test_offsets_are_kept() -> None:
    masked = mask(SOURCE)
    assert len(masked.text) == len(SOURCE)
    assert masked.text.count(b"\n") == SOURCE.count(b"\n")


def test_conditions_by_branch() -> None:
    masked = mask(SOURCE)
    assert masked.condition_at(SOURCE.index(b"&a")) is None
    assert masked.condition_at(SOURCE.index(b"&b")) == "TARGET_X86_64"
    assert masked.condition_at(SOURCE.index(b"&c")) == "!TARGET_X86_64"


def test_if_0_is_blanked_and_quirks_parse() -> None:
    masked = mask(SOURCE)
    assert b"&dead" not in masked.text
    assert b"..." not in masked.text
    assert not list(error_nodes(parse(masked.text).root_node))
    assert list(error_nodes(parse(SOURCE).root_node)), "the unmasked source should trip tree-sitter"


def test_unbalanced_conditional_is_reported() -> None:
    masked = mask(b"int a;\n#endif\n#ifdef X\nint b;\n")
    assert masked.unbalanced_lines == (2, 3)


def test_truncated_file_is_closed_past_its_end() -> None:
    source = (
        b"const VMStateDescription d = {\n    .subsections = (const VMStateDescription * const []) {\n        &a,\n"
    )
    masked = mask(source)
    assert masked.unclosed == (2, 2)
    assert masked.text.startswith(source)
    assert not list(error_nodes(parse(masked.text).root_node))


def test_masked_macros_do_not_count_as_open_brackets() -> None:
    source = b"void f(void)\n{\n    g_autoptr(Error) err = NULL;\n    char c = '{';\n    /* ( */\n}\n"
    masked = mask(source)
    assert masked.unclosed is None
    assert masked.text == masked.text[: len(source)]


def test_description_spans_cover_descriptions_only() -> None:
    from analyzer.preprocess import description_spans

    source = (
        b"static void f(void) { int x = 1; }\n"
        b'static const VMStateDescription vmstate_a = {\n    .name = "a",\n    .x = { 1, { 2 } },\n};\n'
        b"int g;\n"
        b"{ VMStateDescription vmstate_b = { 1 }; }\n"  # inside a block: not a file-scope definition
    )
    start = source.index(b"static const VMStateDescription")
    end = source.index(b"};\n") + 2
    assert description_spans(source) == [(start, end)]
    tree = parse(source, [(start, end)])
    assert not list(error_nodes(tree.root_node))
    (declaration,) = tree.root_node.named_children
    assert declaration.start_point == (1, 0)  # lines and columns are the whole file's
