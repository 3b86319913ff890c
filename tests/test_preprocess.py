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


def test_span_masking_blanks_quirks_inside_the_spans_only() -> None:
    from analyzer.preprocess import description_spans

    source = (
        b"#if 0\nstatic const VMStateDescription vmstate_dead = { };\n#endif\n"
        b"int f(int x) { switch (x) { case 1 ... 3: return 1; } return 0; }\n"
        b"static const VMStateDescription vmstate_a = {\n"
        b"    .fields = (const VMStateField[]) {\n"
        b"        VMSTATE_STRUCT_POINTER(p, S, vmstate_p, struct Inner),\n"
        b"#ifdef CONFIG_X\n        VMSTATE_UINT32(x, S),\n#endif\n"
        b"        VMSTATE_END_OF_LIST()\n    }\n};\n"
    )
    whole = mask(source)
    partial = mask(source, description_spans)
    # The same spans as found in the whole masked file: #if 0 is blanked first,
    # so vmstate_dead is no span, and #ifdef lines inside one are blanks.
    assert partial.spans == tuple(description_spans(whole.text))
    ((start, end),) = partial.spans
    assert source[start:].startswith(b"static const VMStateDescription vmstate_a")
    assert partial.text[start:end] == whole.text[start:end]
    assert b"struct Inner" not in partial.text[start:end]
    assert not list(error_nodes(parse(partial.text, partial.spans).root_node))
    # Outside the spans nothing is parsed, so the case range is left as it is.
    assert b"case 1 ... 3" in partial.text
    assert whole.spans is None


def test_property_spans_cover_property_definitions_only() -> None:
    from analyzer.facts.extract import extract_file
    from analyzer.preprocess import property_spans
    from analyzer.profile import load_profile

    source = (
        b"static void broken(void) { int x = ; }\n"
        b"static const Property x86_cpu_properties[] = {\n"
        b'    DEFINE_PROP_BOOL("x-migrate-smi-count", X86CPU, migrate_smi_count, true),\n'
        b"};\n"
        b'GlobalProperty pc_compat_2_11[] = { { "x86_64-cpu", "x", "off" } };\n'
        b'static Property cbar = DEFINE_PROP_UINT64("reset-cbar", ARMCPU, reset_cbar, 0);\n'
    )
    array = source.index(b"static const Property")
    scalar = source.index(b"static Property")
    assert property_spans(source) == [
        (array, source.index(b"};\n") + 2),
        (scalar, len(source) - 1),
    ]  # not the GlobalProperty table, which is a compat file's business
    facts = extract_file("target/i386/cpu.c", source, load_profile("i386"), "properties")
    assert [(p.name, p.struct_type, p.member, p.line) for p in facts.properties] == [
        ("x-migrate-smi-count", "X86CPU", "migrate_smi_count", 3),
        ("reset-cbar", "ARMCPU", "reset_cbar", 6),
    ]
    assert not facts.diagnostics  # the broken function is not read


def test_a_description_file_gives_the_properties_of_its_property_definitions() -> None:
    from analyzer.facts.extract import extract_file
    from analyzer.profile import load_profile

    source = (
        b'static const Property kvmclock_properties[] = {\n    DEFINE_PROP_BOOL("x-mach-use-reliable-get-clock",'
        b" KVMClockState, mach_use_reliable_get_clock, true),\n};\n"
        b'static void f(void) { g(DEFINE_PROP_BOOL("not-a-property", S, x, 0)); }\n'
    )
    facts = extract_file("hw/i386/kvm/clock.c", source, load_profile("i386"), "vmstate")
    assert [(p.name, p.struct_type, p.member, p.line) for p in facts.properties] == [
        ("x-mach-use-reliable-get-clock", "KVMClockState", "mach_use_reliable_get_clock", 2),
    ]
