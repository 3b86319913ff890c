"""#define values for prove: MSR indices and KVM_CAP_* numbers from the tree's own headers."""

from __future__ import annotations

from pathlib import Path

from analyzer.prove.constants import evaluate, read_defines

HEADER = """\
#define MSR_TSC_ADJUST                  0x0000003b
#define MSR_IA32_MISC_ENABLE_DEFAULT    1         /* fast string */
#define HV_X64_MSR_STIMER0_CONFIG       0x400000B0
#define MSR_AMD64_TSC_RATIO_DEFAULT     0x100000000ULL
#define MSR_MC0_CTL                     0x400
#define MSR_MC_CTL(n)                   (MSR_MC0_CTL + 4 * (n))
#define KVM_CAP_TSC_CONTROL 60
# define INDENTED (1 << 3)
#define CIRCULAR CIRCULAR
#define MSR_OCTAL 010
"""


def test_read_defines_takes_object_like_defines_of_present_headers(tmp_path: Path) -> None:
    (tmp_path / "cpu.h").write_text(HEADER)
    defines = read_defines(tmp_path, ["missing.h", "cpu.h"])
    assert defines["MSR_TSC_ADJUST"] == "0x0000003b"
    assert defines["MSR_IA32_MISC_ENABLE_DEFAULT"] == "1"  # the comment is not the value
    assert defines["INDENTED"] == "(1 << 3)"
    assert "MSR_MC_CTL" not in defines  # a function-like macro has no single value


def test_evaluate_follows_defines_suffixes_and_loop_variables(tmp_path: Path) -> None:
    (tmp_path / "cpu.h").write_text(HEADER)
    defines = read_defines(tmp_path, ["cpu.h"])
    assert evaluate("MSR_TSC_ADJUST", defines) == 0x3B
    assert evaluate("MSR_AMD64_TSC_RATIO_DEFAULT", defines) == 1 << 32
    assert evaluate("HV_X64_MSR_STIMER0_CONFIG + j * 2", defines, {"j": 1}) == 0x400000B2
    assert evaluate("INDENTED | 1", defines) == 9
    assert evaluate("MSR_OCTAL", defines) == 8
    assert evaluate("~0", defines) == (1 << 64) - 1


def test_evaluate_gives_none_for_what_is_not_an_integer_expression(tmp_path: Path) -> None:
    (tmp_path / "cpu.h").write_text(HEADER)
    defines = read_defines(tmp_path, ["cpu.h"])
    assert evaluate("MSR_UNKNOWN", defines) is None
    assert evaluate("MSR_MC_CTL(2)", defines) is None
    assert evaluate("CIRCULAR", defines) is None
    assert evaluate("env->msr", defines) is None
    assert evaluate('"text"', defines) is None
