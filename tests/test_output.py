"""What a maintainer reads: notes that matter, summaries that add up, a last line
that says what failed, escaped names, and the command line's conventions."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema

from support import FIXTURES, MINI, REPO, git, real_tree, run_cli

SCHEMA = json.loads((REPO / "analyzer" / "schema" / "audit.schema.json").read_text())

# In qemu-mini, accel/kvm/kvm-all.c:14 `va_arg(ap, void *)` does not parse, in
# kvm_ioctl(), which no put or get path calls and which probes nothing itself.
UNUSED_NOTE = "accel/kvm/kvm-all.c:14: note: could not parse `*` in kvm_ioctl"


def _copy(tmp_path: Path, source: Path = MINI) -> Path:
    tree = tmp_path / "qemu"
    shutil.copytree(source, tree)
    return tree


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _broken_put_path(tmp_path: Path) -> tuple[Path, int]:
    """qemu-mini with a line tree-sitter cannot parse inside kvm_put_msrs(), on the put path."""
    tree = _copy(tmp_path)
    kvm = tree / "target/i386/kvm/kvm.c"
    _edit(kvm, "    if (has_msr_star) {\n", "    int broken = 1 @ 2;\n    if (has_msr_star) {\n")
    line = kvm.read_text().splitlines().index("    int broken = 1 @ 2;") + 1
    return tree, line


def test_only_notes_on_what_an_analysis_uses_are_shown(tmp_path: Path) -> None:
    tree, line = _broken_put_path(tmp_path)
    out = run_cli("audit", str(tree)).stdout
    assert f"target/i386/kvm/kvm.c:{line}: note: could not parse" in out
    assert UNUSED_NOTE not in out
    # Files the analysis expected are always worth saying (line 0).
    assert "hw/i386/pc_q35.c:0: note: not in this tree" in out
    lines = out.splitlines()
    assert lines[-2] == (
        "4 notes: regions not understood, files missing, CPU-model checks; 1 more on code no analysis uses (--verbose)"
    )
    assert sum(1 for text in lines if ": note: " in text) == 4  # counted as printed
    assert lines[-1] == "4 findings (4 VG001), 1 note hidden (--verbose)"
    verbose = run_cli("audit", str(tree), "--verbose").stdout.splitlines()
    assert UNUSED_NOTE in verbose
    assert verbose[-2] == "5 notes: regions not understood, files missing, CPU-model checks"
    assert verbose[-1] == "4 findings (4 VG001)"


def test_json_says_which_diagnostics_touch_an_analysis(tmp_path: Path) -> None:
    tree, line = _broken_put_path(tmp_path)
    document = json.loads(run_cli("audit", str(tree), "-f", "json").stdout)
    touches = {(d["file"], d["line"]): d["touches_analysis"] for d in document["diagnostics"]}
    assert touches[("target/i386/kvm/kvm.c", line)] is True
    assert touches[("accel/kvm/kvm-all.c", 14)] is False
    assert touches[("hw/i386/pc_q35.c", 0)] is True


def test_a_few_findings_are_named_on_the_last_line(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    (tree / ".vmstate-guard.toml").write_text(
        '[[accept]]\nsubsection = "cpu/xcr0"\nreason = "r"\n[[accept]]\nsubsection = "cpu/pdptrs"\nreason = "r"\n'
        '[[accept]]\nsubsection = "cpu/exception_info"\nreason = "r"\n'
    )
    lines = run_cli("audit", str(tree)).stdout.splitlines()
    assert lines[-1] == "1 finding (VG001 cpu/msr_smi_count), 1 note hidden (--verbose)"
    assert "not reported: 3 findings accepted in" in "\n".join(lines)


def test_nested_subsections_folded_into_a_finding_are_counted(tmp_path: Path) -> None:
    # Without nested_state_post_load, cpu/nested_state and its nested
    # cpu/kvm_nested_state/inner are unchecked: one VG001 finding for both.
    tree = _copy(tmp_path)
    _edit(tree / "target/i386/machine.c", "    .post_load = nested_state_post_load,\n", "")
    out = run_cli("audit", str(tree)).stdout
    assert "unchecked: 6 of 12 subsections (1 nested in an unchecked one share its VG001 finding)" in out
    assert out.splitlines()[-1].startswith("5 findings (5 VG001)")


def test_unit_lines_are_singular_and_skip_units_without_subsections() -> None:
    # device-i8259 (expected.toml): the CPU has no subsection, the i8259 unit one
    # (i8259/ltim, not-kvm) and one VG004 finding (poll, put and read back, never migrated).
    lines = run_cli("audit", str(FIXTURES / "device-i8259")).stdout.splitlines()
    assert [line for line in lines if line.startswith("  ") and not line.startswith("    ")] == [
        "  i386/i8259: 1 subsection (1 not-kvm), 1 finding",
        "  no subsections: i386",
    ]
    assert "not-kvm: 1 of 1 subsection" in lines
    assert lines[-1] == "1 finding (VG004 poll)"
    tree = str(FIXTURES / "device-i8259")
    check = run_cli("check", tree, "--base-tree", tree).stdout.splitlines()
    assert "  i386/i8259: 1 subsection (1 not-kvm), 0 new findings" in check


def test_text_says_how_much_the_tree_wide_rules_read() -> None:
    # qemu-mini: 14 descriptions, all in target/i386/machine.c; kvm.c and cpu.c
    # are read as well, for references to them.
    out = run_cli("audit", str(MINI)).stdout
    assert "tree-wide rules read 14 descriptions in 1 file (3 files in all)" in out


def test_check_says_how_many_findings_are_new(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    base = _copy(tmp_path / "base")
    _edit(base / "target/i386/machine.c", "        &vmstate_msr_smi_count,\n", "")
    lines = run_cli("check", str(tree), "--base-tree", str(base)).stdout.splitlines()
    assert "not reported: 3 findings already in the base" in lines
    assert lines[-1] == "1 new finding (VG001 cpu/msr_smi_count), 1 note hidden (--verbose)"
    same = run_cli("check", str(tree), "--base-tree", str(tree)).stdout.splitlines()
    assert same[-1] == "no new findings, 1 note hidden (--verbose)"


def test_riscv_guards_keep_their_member_chain_and_name_their_probes() -> None:
    document = json.loads(run_cli("audit", str(FIXTURES / "target-riscv"), "-f", "json").stdout)
    consumers = {s["name"]: c for s in document["subsections"] for c in s["consumers"] if c["host_capability_guards"]}
    # kvm-cpu.c: `if (kvm_v_vlenb.supported)` and `if (!csr_cfg->supported) continue;`.
    assert consumers["cpu/vector"]["host_capability_guards"] == ["kvm_v_vlenb.supported"]
    assert consumers["cpu/envcfg"]["host_capability_guards"] == ["csr_cfg->supported"]
    # `supported` is set from KVM_GET_ONE_REG (line 153) and from the register list (line 198).
    probes = [(p["name"], p["line"], p["function"]) for p in consumers["cpu/envcfg"]["probes"]]
    assert probes == [
        ("KVM_GET_ONE_REG", 153, "kvm_riscv_read_csr_cfg_legacy"),
        ("KVM_GET_REG_LIST", 198, "kvm_riscv_init_cfg"),
    ]
    (vector,) = [f for f in document["findings"] if f["subsection"] == "cpu/vector"]
    assert "only if kvm_v_vlenb.supported (" in vector["message"]


# A device file whose name retitles a terminal, and one whose name forges a
# finding line; a subsection name with an escape sequence.
_TITLE = "\x1b]0;pwned\x07"
_FORGED = "x.c:1:1: warning: forged [VG001]"
_DEVICE = """\
static const VMStateDescription vmstate_evil_sub = {
    .name = "evil/sub%s",
    .fields = (const VMStateField[]) {
        VMSTATE_END_OF_LIST()
    }
};

static const VMStateDescription vmstate_evil = {
    .name = "evil",
    .fields = (const VMStateField[]) {
        VMSTATE_END_OF_LIST()
    },
    .subsections = (const VMStateDescription * const []) {
        &vmstate_evil_sub,
        NULL
    }
};
"""


def _hostile(tmp_path: Path) -> Path:
    tree = _copy(tmp_path)
    (tree / "hw" / f"title{_TITLE}.c").write_text(_DEVICE % _TITLE)
    (tree / "hw" / f"evil\n{_FORGED}.c").write_text(_DEVICE % "")
    return tree


def test_hostile_names_are_escaped_in_text_output(tmp_path: Path) -> None:
    result = run_cli("audit", str(_hostile(tmp_path)), "--verbose")
    assert result.returncode == 1
    for stream in (result.stdout, result.stderr):
        assert "\x1b" not in stream and "\x07" not in stream
    assert not any(line.startswith(_FORGED) for line in result.stdout.splitlines())
    assert "hw/title\\x1b]0;pwned\\x07.c:" in result.stdout
    assert "subsection 'evil/sub\\x1b]0;pwned\\x07' has no needed()" in result.stdout
    assert f"hw/evil\\n{_FORGED}.c:" in result.stdout


def test_hostile_names_are_escaped_in_github_output(tmp_path: Path) -> None:
    out = run_cli("audit", str(_hostile(tmp_path)), "-f", "github").stdout
    assert "\x1b" not in out and "\x07" not in out
    assert all(line.startswith("::") for line in out.splitlines())


def test_exit_zero_keeps_errors() -> None:
    assert run_cli("audit", str(MINI), "--exit-zero").returncode == 0
    assert run_cli("check", str(MINI), "--base-tree", str(MINI), "--exit-zero").returncode == 0
    missing = run_cli("audit", "/no/such/tree", "--exit-zero")
    assert missing.returncode == 2
    assert missing.stderr.startswith("vmstate-guard: error:")


def test_select_and_ignore_on_the_command_line(tmp_path: Path) -> None:
    out = json.loads(run_cli("audit", str(MINI), "-f", "json", "--select", "VG002,subsection-name-prefix").stdout)
    assert out["findings"] == []
    ignored = run_cli("audit", str(MINI), "--ignore", "unchecked-capability-subsection")
    assert ignored.returncode == 0
    assert ignored.stdout.splitlines()[-1] == "no findings, 1 note hidden (--verbose)"
    # --select overrides the config's disable.
    tree = _copy(tmp_path)
    (tree / ".vmstate-guard.toml").write_text('[rules]\ndisable = ["VG001"]\n')
    assert run_cli("audit", str(tree)).returncode == 0
    assert run_cli("audit", str(tree), "--select", "VG001").returncode == 1
    wrong = run_cli("audit", str(MINI), "--select", "VG099")
    assert wrong.returncode == 2
    assert wrong.stderr == (
        "vmstate-guard: error: command line: '--select' names no rule: 'VG099' (see vmstate-guard --list-rules)\n"
    )


def test_short_options_and_list_rules_after_a_command(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    assert run_cli("audit", str(MINI), "-f", "json", "-j", "1", "-o", str(out)).returncode == 1
    assert json.loads(out.read_text())["schema_version"] == 3
    for command in ("audit", "check"):
        listed = run_cli(command, "--list-rules")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == run_cli("--list-rules").stdout
        assert listed.stdout.startswith("VG001  unchecked-capability-subsection")


def test_graph_help_has_examples() -> None:
    text = run_cli("graph", "--help").stdout
    assert "examples:" in text
    assert "vmstate-guard graph ~/src/qemu -f graphml -o graph.graphml" in text


def _complete(script: str, *words: str) -> list[str]:
    """COMPREPLY of the generated bash function for the command line `words` (the last is being typed)."""
    program = (
        f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        'cd "$1"; _vmstate_guard; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", program, "bash", str(MINI)], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completion_is_generated_from_the_parser() -> None:
    script = run_cli("completion", "bash").stdout
    assert _complete(script, "vmstate-guard", "ch") == ["check"]
    assert _complete(script, "vmstate-guard", "audit", "-f", "s") == ["sarif"]
    assert _complete(script, "vmstate-guard", "audit", ".", "--exit") == ["--exit-zero"]
    assert _complete(script, "vmstate-guard", "check", ".", "--target", "ri") == ["riscv"]
    assert _complete(script, "vmstate-guard", "explain", "VG00")[:2] == ["VG001", "VG002"]
    assert _complete(script, "vmstate-guard", "fix", ".", "--mode", "") == ["fail", "warn"]
    assert "target" in _complete(script, "vmstate-guard", "audit", "")  # QEMU_DIR: directories
    zsh = run_cli("completion", "zsh").stdout
    assert "bashcompinit" in zsh and zsh.endswith(script)


def test_check_on_a_repository_without_commits(tmp_path: Path) -> None:
    # The pre-commit hook's `check . --base HEAD` on the first commit: the base is empty.
    repo = _copy(tmp_path)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text()
    (entry,) = [line.split("entry:", 1)[1].split() for line in hooks.splitlines() if line.strip().startswith("entry:")]
    result = run_cli(*entry[1:2], *[str(repo) if part == "." else part for part in entry[2:]])
    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[-1] == "4 new findings (4 VG001), 1 note hidden (--verbose)"
    # Any other revision that does not exist is still an error.
    wrong = run_cli("check", str(repo), "--base", "main")
    assert wrong.returncode == 2
    assert "unknown revision 'main'" in wrong.stderr


def test_real_10_json_and_summary(tmp_path: Path) -> None:
    tree = real_tree("10")
    document = json.loads(run_cli("audit", str(tree), "-f", "json").stdout)
    jsonschema.validate(document, SCHEMA)  # no evidence at line 0 (hyperv_enabled()'s return was)
    # Every definition outside tests/unit: grep finds 1,183 `VMStateDescription x = {` in .c files,
    # 16 in tests/unit, and misses erst_vmstate (`x  = {`) and vmstate_rtl8139_hotplug_ready (`x ={`).
    assert document["tree"]["inventory"] == {"descriptions": 1169, "description_files": 625, "files": 899}
    consumers = {s["name"]: s["consumers"] for s in document["subsections"]}
    # kvm.c: `if (kvm_check_extension(cs->kvm_state, KVM_CAP_TSC_CONTROL)) { set_ioctl = true;` (line 897).
    (tsc,) = [c for c in consumers["cpu/tsc_khz"] if c["host_capability_guards"]]
    assert tsc["host_capability_guards"] == ["set_ioctl"]
    assert [(p["name"], p["file"], p["line"]) for p in tsc["probes"]] == [
        ("KVM_CAP_TSC_CONTROL", "target/i386/kvm/kvm.c", 897)
    ]
    (hypercall, *_) = [c for c in consumers["cpu/msr_hyperv_hypercall"] if c["host_capability_guards"]]
    # hyperv_enabled() (kvm.c:857) returns kvm_check_extension(kvm_state, KVM_CAP_HYPERV) > 0 && ...
    assert [(p["name"], p["line"], p["function"]) for p in hypercall["probes"]] == [
        ("KVM_CAP_HYPERV", 857, "hyperv_enabled")
    ]
    text = run_cli("audit", str(tree)).stdout.splitlines()
    assert "tree-wide rules read 1,169 descriptions in 625 files (899 files in all)" in text
    assert "unchecked: 30 of 135 subsections (2 nested in an unchecked one share its VG001 finding)" in text
    assert text[-1] == "37 findings (28 VG001, 7 VG002, 1 VG004, 1 VG006), 101 notes hidden (--verbose)"
    assert sum(1 for line in text if ": note: " in line) == 25
