"""Pre-merge lint: `check --base`, baselines, configuration and the CI formats."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from support import MINI, REPO, git, run_cli

SARIF_SCHEMA = json.loads((REPO / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
SMI_ENTRY = "        &vmstate_msr_smi_count,\n"
EXCEPTION_ENTRY = "        &vmstate_exception_info,\n"


def _commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def history(tmp_path: Path) -> dict[str, str | Path]:
    """A git repository of the fixture tree, one commit per step of a merge request."""
    repo = tmp_path / "qemu"
    shutil.copytree(MINI, repo)
    machine = repo / "target/i386/machine.c"
    kvm = repo / "target/i386/kvm/kvm.c"
    git(repo, "init", "-q")
    _edit(machine, SMI_ENTRY, "")
    base = _commit(repo, "base: msr_smi_count not listed")
    _edit(machine, EXCEPTION_ENTRY, SMI_ENTRY + EXCEPTION_ENTRY)
    added = _commit(repo, "list cpu/msr_smi_count: adds an unchecked subsection")
    _edit(
        kvm,
        "int kvm_arch_init(",
        "bool kvm_has_msr_smi_count(void)\n{\n    return has_msr_smi_count;\n}\n\nint kvm_arch_init(",
    )
    _edit(
        machine,
        "// ruleid: unchecked-capability-subsection\nstatic const VMStateDescription vmstate_msr_smi_count = {",
        "static int msr_smi_count_post_load(void *opaque, int version_id)\n{\n"
        '    if (!kvm_has_msr_smi_count()) {\n        error_report("cpu/msr_smi_count: no MSR_SMI_COUNT");\n'
        "        return -EINVAL;\n    }\n    return 0;\n}\n\n"
        "static const VMStateDescription vmstate_msr_smi_count = {\n    .post_load = msr_smi_count_post_load,",
    )
    fixed = _commit(repo, "add the post_load check")
    machine.write_text("/* moved down */\n" * 7 + machine.read_text())
    kvm.write_text("\n\n\n" + kvm.read_text())
    moved = _commit(repo, "only move code")
    return {"repo": repo, "base": base, "added": added, "fixed": fixed, "moved": moved}


def _check(history: dict[str, str | Path], base: str, head: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("check", str(history["repo"]), "--base", str(history[base]), "--head", str(history[head]), *extra)


def test_added_unchecked_subsection_is_reported(history: dict[str, str | Path]) -> None:
    result = _check(history, "base", "added", "--format", "json")
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert [f["subsection"] for f in findings] == ["cpu/msr_smi_count"]


def test_post_load_check_clears_it(history: dict[str, str | Path]) -> None:
    result = _check(history, "base", "fixed")
    assert result.returncode == 0, result.stdout
    assert "not reported: 3 findings already in the base" in result.stdout


def test_moved_code_reports_nothing(history: dict[str, str | Path]) -> None:
    assert _check(history, "added", "moved").returncode == 0
    result = _check(history, "fixed", "moved")
    assert result.returncode == 0
    assert "warning:" not in result.stdout


def test_check_does_not_touch_the_checkout(history: dict[str, str | Path]) -> None:
    repo = history["repo"]
    assert isinstance(repo, Path)
    _edit(repo / "target/i386/machine.c", "cpu/cr", "cpu/cr-edited")
    before = (git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD"), (repo / ".git/index").read_bytes())
    _check(history, "base", "added")
    after = (git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD"), (repo / ".git/index").read_bytes())
    assert before == after


def test_head_defaults_to_the_working_tree(history: dict[str, str | Path]) -> None:
    repo = history["repo"]
    assert isinstance(repo, Path)
    git(repo, "checkout", "-q", str(history["added"]))
    result = run_cli("check", str(repo), "--base", str(history["base"]))
    assert result.returncode == 1
    assert "cpu/msr_smi_count" in result.stdout


def test_base_tree_withoutgit(tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(MINI, old)
    _edit(old / "target/i386/machine.c", SMI_ENTRY, "")
    result = run_cli("check", str(MINI), "--base-tree", str(old), "--format", "json")
    assert result.returncode == 1
    assert [f["subsection"] for f in json.loads(result.stdout)["findings"]] == ["cpu/msr_smi_count"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base", "no-such-rev"], "unknown revision 'no-such-rev'"),
        (["--base-tree", "/no/such/dir"], "/no/such/dir: no such directory"),
        ([], "one of the arguments --base --base-tree is required"),
    ],
)
def test_check_bad_input(history: dict[str, str | Path], args: list[str], message: str) -> None:
    result = run_cli("check", str(history["repo"]), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_base_needs_a_git_repository(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    result = run_cli("check", str(tree), "--base", "HEAD~1")
    assert result.returncode == 2
    assert "not a git repository (use --base-tree DIR to compare unpacked trees)" in result.stderr


def test_tree_in_a_subdirectory_of_the_repository() -> None:
    # The fixture tree sits in this project's own repository; HEAD has it too.
    if not (REPO / ".git").exists():
        pytest.skip("the project is not a git checkout here")
    result = run_cli("check", str(MINI), "--base", "HEAD")
    assert result.returncode == 0, result.stderr


def test_baseline_hides_and_reappears(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    assert run_cli("audit", str(MINI), "--write-baseline", str(baseline)).returncode == 0
    data = json.loads(baseline.read_text())
    assert sorted(e["subsection"] for e in data["findings"]) == [
        "cpu/exception_info",
        "cpu/msr_smi_count",
        "cpu/pdptrs",
        "cpu/xcr0",
    ]
    # Reordered entries with reasons still match.
    data["findings"].reverse()
    for entry in data["findings"]:
        entry["reason"] = "reviewed"
    baseline.write_text(json.dumps(data))
    hidden = run_cli("audit", str(MINI), "--baseline", str(baseline))
    assert hidden.returncode == 0
    assert "not reported: 4 findings recorded in the baseline" in hidden.stdout
    data["findings"] = [e for e in data["findings"] if e["subsection"] != "cpu/xcr0"]
    baseline.write_text(json.dumps(data))
    back = run_cli("audit", str(MINI), "--baseline", str(baseline), "--format", "json")
    assert back.returncode == 1
    assert [f["subsection"] for f in json.loads(back.stdout)["findings"]] == ["cpu/xcr0"]
    # Re-writing keeps the reasons already given.
    assert run_cli("audit", str(MINI), "--baseline", str(baseline), "--write-baseline", str(baseline)).returncode == 0
    rewritten = json.loads(baseline.read_text())["findings"]
    assert [e["reason"] for e in rewritten if e["subsection"] == "cpu/pdptrs"] == ["reviewed"]
    assert [e["fingerprint"] for e in rewritten] == sorted(e["fingerprint"] for e in rewritten)


def test_bad_baseline_is_one_line(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text("{not json")
    result = run_cli("audit", str(MINI), "--baseline", str(baseline))
    assert result.returncode == 2
    assert "not a JSON baseline" in result.stderr


def _with_config(tmp_path: Path, text: str) -> Path:
    tree = tmp_path / "qemu"
    shutil.copytree(MINI, tree)
    (tree / ".vmstate-guard.toml").write_text(text)
    return tree


def test_config_accepts_with_reason_and_overrides_severity(tmp_path: Path) -> None:
    tree = _with_config(
        tmp_path,
        '[rules]\nseverity = { VG001 = "error" }\n\n'
        '[[accept]]\nsubsection = "cpu/msr_smi_count"\nreason = "x-migrate-smi-count covers our machine types"\n',
    )
    result = run_cli("audit", str(tree), "--format", "json")
    findings = json.loads(result.stdout)["findings"]
    assert "cpu/msr_smi_count" not in [f["subsection"] for f in findings]
    assert {f["severity"] for f in findings} == {"error"}
    assert "not reported: 1 finding accepted in" in run_cli("audit", str(tree)).stdout


def test_config_disables_rule(tmp_path: Path) -> None:
    tree = _with_config(tmp_path, '[rules]\ndisable = ["unchecked-capability-subsection"]\n')
    assert run_cli("audit", str(tree)).returncode == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[rules]\ndisabel = []\n", "unknown key 'rules.disabel'"),
        ("colour = 1\n", "unknown key 'colour'"),
        ('[[accept]]\nsubsection = "cpu/xcr0"\n', "'accept[0].reason' is required"),
        ('[rules]\nseverity = { VG001 = "fatal" }\n', "must be one of error, warning, note"),
        ('[rules]\ndisable = ["VG777"]\n', "names no rule: 'VG777'"),
        ("[rules\n", "not valid TOML"),
        # A rule of the wrong type used to read as absent: every rule's finding accepted.
        ('[[accept]]\nsubsection = "cpu/xcr0"\nreason = "r"\nrule = ["VG003"]\n', "'accept[0].rule' must be a string"),
        ('[[accept]]\nsubsection = "cpu/xcr0"\nreason = "r"\nrule = 1\n', "'accept[0].rule' must be a string, not an"),
        ('[[accept]]\nsubsection = ["cpu/xcr0"]\nreason = "r"\n', "'accept[0].subsection' must be a string"),
        ('[[accept]]\nsubsection = "cpu/xcr0"\nreason = true\n', "'accept[0].reason' must be a string, not a b"),
    ],
)
def test_config_errors_name_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    tree = _with_config(tmp_path, text)
    result = run_cli("audit", str(tree))
    assert result.returncode == 2
    assert message in result.stderr
    assert ".vmstate-guard.toml" in result.stderr


@pytest.mark.parametrize("option", ["--config", "--baseline"])
def test_a_fifo_for_config_or_baseline_is_refused_not_waited_on(tmp_path: Path, option: str) -> None:
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "analyzer", "audit", str(MINI), option, str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,  # the bug: it waited for a writer forever
        check=False,
    )
    assert result.returncode == 2
    what = option.removeprefix("--")
    assert result.stderr == f"vmstate-guard: error: {fifo}: cannot read {what}: not a regular file\n"


def test_config_teaches_a_fork_idiom(tmp_path: Path) -> None:
    tree = _with_config(tmp_path, "")
    _edit(
        tree / "target/i386/kvm/kvm.c",
        "has_xcrs = kvm_check_extension(s, KVM_CAP_XCRS);",
        "has_xcrs = fork_has_cap(s, KVM_CAP_XCRS);",
    )
    plain = json.loads(run_cli("audit", str(tree), "--format", "json").stdout)
    assert "cpu/xcr0" not in [f["subsection"] for f in plain["findings"]]
    (tree / ".vmstate-guard.toml").write_text('[capabilities]\nextension_calls = ["fork_has_cap"]\n')
    taught = json.loads(run_cli("audit", str(tree), "--format", "json").stdout)
    assert "cpu/xcr0" in [f["subsection"] for f in taught["findings"]]


def test_nested_subsections_fold_into_one_finding(tmp_path: Path) -> None:
    tree = _with_config(tmp_path, "")
    _edit(tree / "target/i386/machine.c", "    .post_load = nested_state_post_load,\n", "")
    result = json.loads(run_cli("audit", str(tree), "--format", "json").stdout)
    verdicts = {s["name"]: s["verdict"] for s in result["subsections"]}
    assert verdicts["cpu/nested_state"] == verdicts["cpu/kvm_nested_state/inner"] == "unchecked"
    (finding,) = [f for f in result["findings"] if "nested" in f["subsection"]]
    assert finding["subsection"] == "cpu/nested_state"
    assert "cpu/kvm_nested_state/inner" in finding["message"]


def test_sarif_validates_against_the_official_schema() -> None:
    result = run_cli("audit", str(MINI), "--format", "sarif")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    jsonschema.validate(document, SARIF_SCHEMA)
    run = document["runs"][0]
    assert run["tool"]["driver"]["rules"][0]["id"] == "VG001"
    assert "Why it matters" in run["tool"]["driver"]["rules"][0]["help"]["text"]
    first = run["results"][0]
    assert first["locations"][0]["physicalLocation"]["region"]["startLine"] == 21
    related = [r["message"]["text"] for r in first["relatedLocations"]]
    assert "needed(): msr_smi_count_needed" in related
    assert any("MSR_SMI_COUNT probed" in text for text in related)
    assert list(first["partialFingerprints"]) == ["vmstateGuardFingerprint/v1"]


def test_sarif_message_links_each_related_location() -> None:
    # GitHub code scanning shows a related location only where the message links it.
    run = json.loads(run_cli("audit", str(MINI), "--format", "sarif").stdout)["runs"][0]
    first = run["results"][0]
    ids = [r["id"] for r in first["relatedLocations"]]
    assert ids == [1, 2, 3, 4]
    links = re.findall(r"\[((?:[^\]\\]|\\.)*)\]\((\d+)\)", first["message"]["text"])
    assert [int(number) for _, number in links] == ids
    assert links[0][0] == "needed(): msr_smi_count_needed"
    assert first["message"]["text"].startswith("subsection 'cpu/msr_smi_count' hands env.msr_smi_count to KVM")
    # pdptrs's evidence reads `sregs.pdptrs[i]`: literal brackets are escaped, not links.
    pdptrs = next(r for r in run["results"] if r["properties"]["subsection"] == "cpu/pdptrs")
    assert "sregs.pdptrs\\[i\\]" in pdptrs["message"]["text"]
    assert len(re.findall(r"(?<!\\)\]\(\d+\)", pdptrs["message"]["text"])) == len(pdptrs["relatedLocations"])


def test_sarif_rules_read_well_on_github() -> None:
    run = json.loads(run_cli("audit", str(MINI), "--format", "sarif").stdout)["runs"][0]
    vg001 = run["tool"]["driver"]["rules"][0]
    # The rule docstring's "What it checks" section, on one line: no heading, no indentation.
    full = vg001["fullDescription"]["text"]
    assert full.startswith(
        "A VMState subsection at least one of whose fields reaches KVM, on the destination's put path"
    )
    assert "\n" not in full and "  " not in full and "What it checks" not in full
    markdown = vg001["help"]["markdown"]
    assert "## Why it matters" in markdown
    assert "```c\nstatic bool msr_foo_needed(void *opaque)\n{" in markdown
    assert run["automationDetails"] == {"id": "vmstate-guard/audit/"}
    assert set(run["originalUriBaseIds"]) == {"SRCROOT"}
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] for r in run["results"]} == {
        "SRCROOT"
    }
    check = json.loads(run_cli("check", str(MINI), "--base-tree", str(MINI), "--format", "sarif").stdout)
    assert check["runs"][0]["automationDetails"] == {"id": "vmstate-guard/check/"}


def _multitool() -> str:
    path = os.environ.get("VMSTATE_GUARD_SARIF_MULTITOOL")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("SARIF Multitool not installed (scripts/fetch-test-tools.sh; .ci/run does)")
    return path


@pytest.mark.parametrize(
    "args",
    [["audit", str(MINI)], ["check", str(MINI), "--base-tree", str(MINI)], ["audit", str(MINI), "--verbose"]],
    ids=["audit", "clean-check", "verbose"],
)
def test_sarif_passes_microsofts_validator(args: list[str], tmp_path: Path) -> None:
    # An independent check: the SARIF spec's rules and GitHub code scanning's
    # ingestion rules (GH1xxx), errors and warnings.
    tool = _multitool()
    log, verdict = tmp_path / "vmstate-guard.sarif", tmp_path / "validation.sarif"
    assert run_cli(*args, "--format", "sarif", "-o", str(log)).returncode in (0, 1)
    done = subprocess.run(
        [tool, "validate", str(log), "-o", str(verdict), "--rule-kind", "Gh;Sarif", "--level", "Error;Warning"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(verdict.read_text())["runs"][0]["results"]
    # SARIF2005 asks for the tool's informationUri: this project has no public address to give.
    assert [r["ruleId"] for r in results if r["ruleId"] != "SARIF2005"] == [], done.stdout


def test_sarif_of_a_clean_check_validates(tmp_path: Path) -> None:
    result = run_cli("check", str(MINI), "--base-tree", str(MINI), "--format", "sarif")
    assert result.returncode == 0
    document = json.loads(result.stdout)
    jsonschema.validate(document, SARIF_SCHEMA)
    assert document["runs"][0]["results"] == []


def test_gitlab_code_quality_format() -> None:
    issues = json.loads(run_cli("audit", str(MINI), "--format", "gitlab").stdout)
    assert len(issues) == 4
    for issue in issues:
        assert {"description", "check_name", "fingerprint", "severity", "location"} <= set(issue)
        assert issue["severity"] in {"info", "minor", "major", "critical", "blocker"}
        assert set(issue["location"]) == {"path", "lines"} and issue["location"]["lines"]["begin"] >= 1
    assert len({i["fingerprint"] for i in issues}) == len(issues)


def test_github_annotations() -> None:
    lines = run_cli("audit", str(MINI), "--format", "github").stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(
        "::warning file=target/i386/machine.c,line=21,col=33,title=VG001 unchecked-capability-subsection::"
    )
    assert "%0Atarget/i386/kvm/kvm.c:44: MSR_SMI_COUNT probed" in lines[0]


def test_pre_commit_hook_entry_runs(history: dict[str, str | Path]) -> None:
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text()
    (entry,) = [line.split("entry:", 1)[1].split() for line in hooks.splitlines() if line.strip().startswith("entry:")]
    assert entry[:2] == ["vmstate-guard", "check"]
    (files,) = [line.split("files:", 1)[1].strip() for line in hooks.splitlines() if line.strip().startswith("files:")]
    for path, runs in (("hw/net/e1000.c", True), ("target/i386/kvm/kvm_i386.h", True), ("README.md", False)):
        assert bool(re.search(files, path)) is runs, path
    repo = history["repo"]
    assert isinstance(repo, Path)
    git(repo, "checkout", "-q", str(history["base"]))
    _edit(repo / "target/i386/machine.c", EXCEPTION_ENTRY, SMI_ENTRY + EXCEPTION_ENTRY)
    args = [str(repo) if part == "." else part for part in entry[2:]]
    result = run_cli("check", *args)
    assert result.returncode == 1
    assert "cpu/msr_smi_count" in result.stdout


def test_revision_reader(history: dict[str, str | Path]) -> None:
    from analyzer.git import RevisionReader
    from analyzer.tree import UnusableFileError

    repo = history["repo"]
    assert isinstance(repo, Path)
    reader = RevisionReader(repo, str(history["added"]))
    assert reader.read("no/such/file.c") is None
    with pytest.raises(UnusableFileError, match="not a regular file"):
        reader.read("target/i386")
    # Reads after a miss and an error still return the right bytes.
    assert reader.read("VERSION") == (repo / "VERSION").read_bytes()
    assert b"vmstate_msr_smi_count" in (reader.read("target/i386/machine.c") or b"")
    assert "target/i386/machine.c" in reader.c_files(("hw/",))
    assert not [p for p in reader.c_files(("hw/",)) if p.startswith("hw/")]


def test_directory_listing_follows_os_walk_rules(tmp_path: Path) -> None:
    from analyzer.tree import DirectoryReader

    # .git/hooks/x.c: the repository's own metadata, which no revision lists either.
    for path in [
        "a.c",
        "a.h",
        "notes.txt",
        "hw/b.c",
        "hw/deep/c.c",
        "roms/d.c",
        "sub/e.c",
        "real/f.c",
        ".git/hooks/x.c",
    ]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("int x;\n")
    (tmp_path / "sub/.git").write_text("gitdir: ../.git/modules/sub\n")  # a submodule's checkout
    (tmp_path / "linked").symlink_to("real")  # a link to a directory: not followed
    (tmp_path / "hw/g.c").symlink_to("../a.c")  # a link to a file: listed
    (tmp_path / "hw/broken.c").symlink_to("nowhere.c")  # listed; reading it says why it is unusable
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "h.c").write_text("int y;\n")
    locked.chmod(0)
    try:
        found = DirectoryReader(tmp_path).c_files(("roms/",), (".c", ".h"))
    finally:
        locked.chmod(0o700)
    expected = ["a.c", "a.h", "hw/b.c", "hw/broken.c", "hw/deep/c.c", "hw/g.c", "real/f.c"]
    if os.geteuid() == 0:  # root lists a directory whatever its mode
        expected.append("locked/h.c")
    assert found == sorted(expected)
