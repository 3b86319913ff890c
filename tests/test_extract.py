"""Which functions a file's role has the extractor read: only those its consumers can reach."""

from __future__ import annotations

from analyzer.facts.extract import extract_file
from analyzer.profile import load_profile

MACHINES = b"""\
static void pc_i440fx_machine_options(MachineClass *m) { m->alias = "pc"; }
static void add_2_11(MachineClass *m) { compat_props_add(m->compat_props, pc_compat_2_11, 1); }
static void via_helper(MachineClass *m) { add_2_11(m); }
static void pc_i440fx_machine_2_11_options(MachineClass *m)
{
    pc_i440fx_machine_options(m);
    via_helper(m);
}
DEFINE_I440FX_MACHINE(2, 11);
static void chained_elsewhere(MachineClass *m) { other_file_options(m); }
static void pc_init1(MachineState *machine) { memory_region_init(machine); }
"""


def test_a_machines_file_gives_the_options_chains_to_compat_tables() -> None:
    facts = extract_file("hw/i386/pc_piix.c", MACHINES, load_profile("i386"), "machines")
    assert [m.options_function for m in facts.machines] == ["pc_i440fx_machine_2_11_options"]
    # The options function and what it calls; and what leads to compat_props_add(),
    # which another file's options function may call. Not the board's init code.
    assert sorted(f.name for f in facts.functions) == [
        "add_2_11",
        "pc_i440fx_machine_2_11_options",
        "pc_i440fx_machine_options",
        "via_helper",
    ]


def test_a_cpu_model_file_gives_the_check_function_only() -> None:
    source = b"""\
static void check_consistency(S390CPUModel *model) { }
static void check_compatibility(S390CPUModel *max_model, S390CPUModel *model, Error **errp) { }
void s390_realize_cpu_model(CPUState *cs, Error **errp) { check_compatibility(0, 0, errp); }
"""
    profile = load_profile("s390x")
    assert profile.cpu_model is not None
    facts = extract_file("target/s390x/cpu_models.c", source, profile, "cpu_model")
    assert [f.name for f in facts.functions] == [profile.cpu_model.check_function]


def test_a_function_nested_too_deeply_is_noted_and_the_others_read() -> None:
    # 400 nested blocks, 1,600 nested parentheses: deeper than the recursive walk can follow.
    blocks = "if (x) {\n" * 400 + "x++;\n" + "}\n" * 400
    source = (
        f"static int deep_blocks(int x)\n{{\n{blocks}return x;\n}}\n"
        f"static int deep_parentheses(int x)\n{{\nreturn {'(' * 1600}x{')' * 1600};\n}}\n"
        "static void kvm_put_msrs(X86CPU *cpu) { kvm_msr_entry_add(cpu, MSR_FOO, 0); }\n"
    ).encode()
    facts = extract_file("target/i386/kvm/kvm.c", source, load_profile("i386"), "kvm")
    assert [f.name for f in facts.functions] == ["kvm_put_msrs"]
    assert [(d.line, d.message) for d in facts.diagnostics if "deep" in d.message] == [
        (1, "deep_blocks: nested too deeply to read; skipped"),
        (806, "deep_parentheses: nested too deeply to read; skipped"),
    ]
