"""The command line: exit codes, error lines, outputs, determinism, read-only trees."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import networkx as nx
import pytest

from analyzer.cli import _COMMANDS, build_parser
from support import MINI, REPO, run_cli

SCHEMA = json.loads((REPO / "analyzer" / "schema" / "audit.schema.json").read_text())


def test_audit_text_exit_1_and_format() -> None:
    result = run_cli("audit", str(MINI))
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith("target/i386/machine.c:21:33: warning: subsection 'cpu/msr_smi_count'")
    assert first.endswith("[VG001]")
    assert (
        "    target/i386/kvm/kvm.c:44: MSR_SMI_COUNT probed (msr-index-list) in kvm_get_supported_msrs()"
        in result.stdout
    )
    assert "unchecked: 4 of 12 subsections" in result.stdout
    assert result.stderr == ""


def test_audit_clean_tree_exits_0(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    machine = tree / "target/i386/machine.c"
    text = machine.read_text()
    for name in ("msr_smi_count", "exception_info", "pdptrs", "xcr0"):
        text = text.replace(f"        &vmstate_{name},\n", "")
    machine.write_text(text)
    # The four descriptions are now listed nowhere, which VG006 rightly reports.
    (tree / ".vmstate-guard.toml").write_text('[rules]\ndisable = ["VG006"]\n')
    result = run_cli("audit", str(tree))
    assert result.returncode == 0, result.stdout
    assert "unchecked: 0 of 8 subsections" in result.stdout


def test_json_document_validates_and_has_exact_keys() -> None:
    result = run_cli("audit", str(MINI), "--format", "json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    subsection = next(s for s in document["subsections"] if s["name"] == "cpu/msr_smi_count")
    assert set(subsection) == {
        "unit",
        "symbol",
        "name",
        "file",
        "line",
        "parent",
        "ifdef",
        "needed",
        "post_load",
        "fields",
        "consumers",
        "post_load_checks",
        "compat_properties",
        "verdict",
    }
    assert subsection["parent"] == "vmstate_x86_cpu"
    assert subsection["compat_properties"] == ["x-migrate-smi-count"]
    assert subsection["consumers"][0]["host_capability_guards"] == ["has_msr_smi_count"]
    # kvm.c: `case MSR_SMI_COUNT: has_msr_smi_count = true;` in kvm_get_supported_msrs().
    assert subsection["consumers"][0]["probes"] == [
        {
            "name": "MSR_SMI_COUNT",
            "kind": "msr-index-list",
            "file": "target/i386/kvm/kvm.c",
            "line": 44,
            "function": "kvm_get_supported_msrs",
        }
    ]
    finding = document["findings"][0]
    assert "line" not in finding["fingerprint"]
    # The 14 descriptions of machine.c; machine.c, kvm.c and cpu.c mention "vms" (references).
    inventory = {"descriptions": 14, "description_files": 1, "files": 3}
    assert document["tree"] == {"qemu_version": "10.0.50", "targets": ["i386"], "inventory": inventory}
    (unit,) = document["units"]
    assert unit["unit"] == "i386"
    assert unit["kvm_file"] == "target/i386/kvm/kvm.c"
    # fixtures/qemu-mini/target/i386/machine.c lists 12 subsections; four carry
    # state put behind has_* flags with no post_load check.
    assert unit["verdicts"] == {"unchecked": 4, "checked": 3, "unconditional": 4, "not-kvm": 1}
    assert unit["findings"] == sum(1 for f in document["findings"] if f["unit"] == "i386")
    assert str(REPO) not in result.stdout


def test_fingerprint_survives_moved_lines(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    machine = tree / "target/i386/machine.c"
    machine.write_text("/* moved */\n" * 5 + machine.read_text())
    before = json.loads(run_cli("audit", str(MINI), "--format", "json").stdout)["findings"]
    after = json.loads(run_cli("audit", str(tree), "--format", "json").stdout)["findings"]
    assert [f["fingerprint"] for f in before] == [f["fingerprint"] for f in after]
    assert [f["location"]["line"] + 5 for f in before] == [f["location"]["line"] for f in after]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "/no/such/dir"], "/no/such/dir: no such directory"),
        (["audit", str(MINI / "VERSION")], "not a directory"),
        (["audit", str(REPO / "tests")], "not a QEMU source tree"),
        (["explain", "VG999"], "no rule 'VG999'"),
        (["audit", str(MINI), "-o", str(REPO / "tests")], "is a directory"),
        (["audit", str(MINI), "-o", "/no/such/dir/out.txt"], "does not exist"),
        (["audit", str(MINI), "--format", "xml"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_tree_without_kvm_file(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    (tree / "target/i386/kvm/kvm.c").unlink()
    result = run_cli("audit", str(tree))
    assert result.returncode == 2
    assert "missing target/i386/kvm/kvm.c or target/i386/kvm.c" in result.stderr


def test_list_rules_and_explain() -> None:
    listed = run_cli("--list-rules")
    assert listed.returncode == 0
    assert listed.stdout.startswith("VG001  unchecked-capability-subsection")
    by_id = run_cli("explain", "VG001")
    by_name = run_cli("explain", "unchecked-capability-subsection")
    assert by_id.returncode == 0
    assert by_id.stdout == by_name.stdout
    for heading in ("What it checks", "Why it matters", "Example", "Fix"):
        assert heading in by_id.stdout


def test_output_file_is_written(tmp_path: Path) -> None:
    out = tmp_path / "audit.json"
    result = run_cli("audit", str(MINI), "--format", "json", "-o", str(out))
    assert result.returncode == 1
    assert result.stdout == ""
    assert json.loads(out.read_text())["schema_version"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["audit.json"]


def test_graph_exports(tmp_path: Path) -> None:
    graphml = tmp_path / "graph.graphml"
    assert run_cli("graph", str(MINI), "--format", "graphml", "-o", str(graphml)).returncode == 0
    graph = nx.read_graphml(graphml)
    kinds = {data["kind"] for _, data in graph.nodes(data=True)}
    assert kinds >= {"subsection", "function", "field", "flag", "probe", "property", "compat-array", "machine-type"}
    edges = {(s, t, d["kind"]) for s, t, d in graph.edges(data=True)}
    assert ("target/i386/machine.c#vmstate_x86_cpu", "target/i386/machine.c#vmstate_msr_smi_count", "lists") in edges
    assert ("target/i386/kvm/kvm.c#has_msr_smi_count", "MSR_SMI_COUNT", "probed-by") in edges
    assert ("target/i386/cpu.c#x-migrate-smi-count", "hw/i386/pc.c#pc_compat_2_11", "switched-off-by") in edges
    # The put path: kvm_arch_put_registers -> kvm_put_msrs, which writes env.msr_smi_count.
    assert (
        "target/i386/kvm/kvm.c#kvm_arch_put_registers",
        "target/i386/kvm/kvm.c#kvm_put_msrs",
        "calls",
    ) in edges
    data = json.loads(run_cli("graph", str(MINI), "--format", "json").stdout)
    assert {"nodes", "edges"} <= set(data)
    dot = run_cli("graph", str(MINI), "--format", "dot").stdout
    assert dot.startswith("digraph vmstate_guard {")
    assert '"env.msr_smi_count" -> "target/i386/kvm/kvm.c#kvm_put_msrs"' in dot


@pytest.mark.parametrize(
    "args",
    [
        ["audit", "--format", "text"],
        ["audit", "--format", "json"],
        ["audit", "--format", "sarif"],
        ["audit", "--format", "gitlab"],
        ["audit", "--format", "github"],
        ["audit", "--format", "html"],
        ["graph", "--format", "graphml"],
        ["graph", "--format", "dot"],
        ["graph", "--format", "json"],
    ],
    ids=lambda a: "-".join(a),
)
def test_output_is_deterministic_across_hash_seeds(args: list[str]) -> None:
    command, *options = args
    first = run_cli(command, str(MINI), *options, env={"PYTHONHASHSEED": "1"})
    second = run_cli(command, str(MINI), *options, env={"PYTHONHASHSEED": "2"})
    assert first.stdout == second.stdout
    assert first.stdout


def test_analysed_tree_is_never_written(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)

    def snapshot() -> dict[str, str]:
        return {
            p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tree.rglob("*"))
            if p.is_file()
        } | {"dirs": ",".join(sorted(p.name for p in tree.rglob("*") if p.is_dir()))}

    before = snapshot()
    run_cli("audit", str(tree))
    run_cli("audit", str(tree), "--format", "json")
    run_cli("audit", str(tree), "--format", "html")
    run_cli("check", str(tree), "--base-tree", str(MINI))
    run_cli("graph", str(tree), "--format", "graphml")
    assert run_cli("fix", str(tree), "-o", str(tmp_path / "patches")).returncode == 0
    assert snapshot() == before


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "gitlab", "github", "html"])
def test_reports_hold_no_absolute_paths(tmp_path: Path, fmt: str) -> None:
    tree = tmp_path / "qemu-under-a-private-path"
    shutil.copytree(MINI, tree)
    output = run_cli("audit", str(tree), "--format", fmt).stdout
    assert output
    assert str(tmp_path) not in output
    assert "qemu-under-a-private-path" not in output


def test_python_m_matches_console_script() -> None:
    script = shutil.which("vmstate-guard")
    if script is None:
        pytest.skip("console script not installed (pip install -e .)")
    direct = subprocess.run([script, "audit", str(MINI)], capture_output=True, text=True, check=False)
    module = run_cli("audit", str(MINI))
    assert (direct.returncode, direct.stdout) == (module.returncode, module.stdout)


def test_output_file_gets_ordinary_permissions(tmp_path: Path) -> None:
    out = tmp_path / "audit.txt"
    run_cli("audit", str(MINI), "-o", str(out))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_every_rule_is_documented_and_listed() -> None:
    from analyzer.rules import RULES

    assert len({r.id for r in RULES}) == len({r.name for r in RULES}) == len(RULES)
    listed = run_cli("--list-rules").stdout
    for rule in RULES:
        assert f"{rule.id}  {rule.name}" in listed
        explained = run_cli("explain", rule.id)
        assert explained.returncode == 0
        assert explained.stdout.startswith(f"{rule.id} {rule.name}")
        for heading in ("What it checks", "Why it matters", "Example", "Fix"):
            assert heading in explained.stdout, (rule.id, heading)


def _stderr_on_a_terminal(*args: str) -> tuple[int, bytes]:
    """Run the CLI with stderr on a pseudo-terminal; return its exit code and what it showed."""
    import pty

    primary, secondary = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", *args],
        stdout=subprocess.PIPE,
        stderr=secondary,
        cwd=REPO.parent,
        check=False,
    )
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO once the terminal has no writer left
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    return done.returncode, shown


def test_progress_on_a_terminal_only() -> None:
    code, shown = _stderr_on_a_terminal("audit", str(MINI), "--no-cache")
    assert code == 1
    assert b"parsing [" in shown and b"target/i386/machine.c" in shown
    assert shown.endswith(b"\r\x1b[K"), "the progress line is cleared at the end"
    assert _stderr_on_a_terminal("audit", str(MINI), "--no-cache", "--quiet") == (1, b"")
    assert run_cli("audit", str(MINI), "--no-cache").stderr == ""


def test_unknown_target_lists_the_available_ones() -> None:
    result = run_cli("audit", str(MINI), "--target", "sparc")
    assert result.returncode == 2
    assert "argument --target: invalid choice: 'sparc'" in result.stderr
    assert "i386" in result.stderr.splitlines()[-1]


def _two_target_tree(tmp_path: Path) -> Path:
    """qemu-mini (i386) and target-arm merged into one tree."""
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    shutil.copytree(MINI.parent / "target-arm", tree, dirs_exist_ok=True)
    return tree


def test_audit_covers_every_target_the_tree_has(tmp_path: Path) -> None:
    tree = _two_target_tree(tmp_path)
    result = run_cli("audit", str(tree), "--format", "json")
    document = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    assert document["tree"]["targets"] == ["arm", "i386"]
    assert [u["unit"] for u in document["units"]] == ["arm", "i386"]
    # target-arm/expected.toml: one unchecked subsection (cpu/serror); qemu-mini: four.
    assert {u["unit"]: u["verdicts"]["unchecked"] for u in document["units"]} == {"arm": 1, "i386": 4}
    serror = next(f for f in document["findings"] if f["subsection"] == "cpu/serror")
    assert serror["unit"] == "arm"
    text = run_cli("audit", str(tree)).stdout
    assert "  arm: 4 subsections (1 unchecked, 1 checked, 1 unconditional, 1 not-kvm), 1 finding" in text


def test_target_narrows_and_repeats(tmp_path: Path) -> None:
    tree = _two_target_tree(tmp_path)
    only_arm = json.loads(run_cli("audit", str(tree), "--format", "json", "--target", "arm").stdout)
    assert [u["unit"] for u in only_arm["units"]] == ["arm"]
    both = json.loads(
        run_cli(
            "audit", str(tree), "--format", "json", "--target", "i386", "--target", "arm", "--target", "i386"
        ).stdout
    )
    assert [u["unit"] for u in both["units"]] == ["i386", "arm"]
    missing = run_cli("audit", str(MINI), "--target", "arm")
    assert missing.returncode == 2
    assert "not a QEMU tree with arm KVM support (missing target/arm/machine.c)" in missing.stderr


def test_cpu_model_check_is_reported_apart_from_post_loads() -> None:
    tree = MINI.parent / "target-s390x"
    document = json.loads(run_cli("audit", str(tree), "--format", "json", "--target", "s390x").stdout)
    jsonschema.validate(document, SCHEMA)
    by_name = {s["name"]: s for s in document["subsections"]}
    # cpu/vregs: needed() tests S390_FEAT_VECTOR, the put needs KVM_SYNC_VRS.
    assert by_name["cpu/vregs"]["verdict"] == "checked"
    assert by_name["cpu/vregs"]["cpu_model_check"] == {
        "function": "check_compatibility",
        "file": "target/s390x/cpu_models.c",
        "line": 9,
        "features": ["S390_FEAT_VECTOR"],
        "guards": ["KVM_SYNC_VRS"],
    }
    # cpu/gscb is checked by its post_load; cpu/bpbc tests a feature paired with another guard.
    assert "cpu_model_check" not in by_name["cpu/gscb"]
    assert by_name["cpu/bpbc"]["verdict"] == "unchecked"
    assert "cpu_model_check" not in by_name["cpu/bpbc"]
    text = run_cli("audit", str(tree), "--target", "s390x").stdout
    assert (
        "target/s390x/machine.c:54: note: subsection 'cpu/vregs' is checked by the CPU model, not a post_load: "
        "check_compatibility() (target/s390x/cpu_models.c:9)"
    ) in text


def test_graph_links_a_cpu_model_check(tmp_path: Path) -> None:
    # fixtures/target-s390x: cpu/vregs is checked by check_compatibility()
    # (cpu_models.c), which the graph names, with the feature and guard it pairs.
    s390x = MINI.parent / "target-s390x"
    data = json.loads(run_cli("graph", str(s390x), "--target", "s390x", "--format", "json").stdout)
    checks = [e for e in data["edges"] if e["kind"] == "checked-by-cpu-model"]
    vregs = [e for e in checks if e["source"].endswith("#vmstate_vregs")]
    assert vregs and vregs[0]["target"] == "target/s390x/cpu_models.c#check_compatibility"
    assert vregs[0]["features"] == "S390_FEAT_VECTOR->KVM_SYNC_VRS"


def test_a_command_s_own_parser_is_the_one_the_whole_parser_holds() -> None:
    # main() builds only the command it is given; --help and completion build all of them.
    def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return dict(action.choices)

    whole = commands(build_parser())
    assert list(whole) == list(_COMMANDS)
    for name in _COMMANDS:
        alone = commands(build_parser(name))
        assert list(alone) == [name]
        assert alone[name].format_help() == whole[name].format_help()
        assert [(a.dest, a.default, a.choices, a.type) for a in alone[name]._actions] == [
            (a.dest, a.default, a.choices, a.type) for a in whole[name]._actions
        ]
