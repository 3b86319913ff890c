"""`vmstate-guard prove` on the real QEMU 10.0 tree, built here, migrating guests under KVM.

The expectations come from the C source, not from the tool's output:
target/i386/kvm/kvm.c puts env->tsc_adjust only `if (has_msr_tsc_adjust)`,
set in kvm_get_supported_msrs() from the MSR index list, and
target/i386/machine.c gives vmstate_msr_tsc_adjust no post_load; the
steal-time MSR is put under guest CPUID bits only; cpu/nested_state's
post_load checks kvm_max_nested_state_length().

The first run builds qemu-system-x86_64 into the prove cache (about 10
minutes on 2 cores); later runs reuse it while the tree is unchanged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from analyzer.prove.build import build_qemu, prove_cache_directory
from analyzer.prove.host import host_kvm
from analyzer.prove.plan import distinctive
from support import real_tree, run_cli, usable_kvm

TSC_ADJUST = 0x3B
# Put under guest CPUID bits only (no host probe), and checked by a post_load.
CONTROLS = ("cpu/steal_time_msr", "cpu/async_pf_msr", "cpu/nested_state")
# MSR-probed findings whose MSR this host's KVM lists and a real-mode guest can set.
CONFIRMED_HERE = ("cpu/msr_tsc_adjust", "cpu/msr_tscdeadline", "cpu/msr_ia32_misc_enable", "cpu/msr_hwcr")


@pytest.fixture(scope="module")
def tree() -> Path:
    usable_kvm()
    return real_tree("10")


@pytest.fixture(scope="module")
def findings_run(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every VG001 finding of the x86 CPU, and fix's whole series built and run."""
    out = tmp_path_factory.mktemp("prove")
    fixed = run_cli("fix", str(tree), "-o", str(out / "patches"))
    assert fixed.returncode == 0, fixed.stderr
    done = run_cli("prove", str(tree), "--patches", str(out / "patches"), "--format", "json", "-o", str(out / "p.json"))
    assert done.returncode in (0, 1), done.stderr
    document: dict[str, Any] = json.loads((out / "p.json").read_text())
    document["exit"] = done.returncode
    document["patch_dir"] = str(out / "patches")
    return document


@pytest.fixture(scope="module")
def controls_run(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("controls") / "c.json"
    args = [arg for name in CONTROLS for arg in ("--subsection", name)]
    done = run_cli("prove", str(tree), *args, "--format", "json", "-o", str(out))
    assert done.returncode in (0, 1), done.stderr
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def _proofs(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s["proof"] for s in document["subsections"] if "proof" in s}


def test_msr_tsc_adjust_is_confirmed(findings_run: dict[str, Any]) -> None:
    proof = _proofs(findings_run)["cpu/msr_tsc_adjust"]
    assert proof["result"] == "confirmed", proof["reason"]
    assert proof["hidden"] == ["MSR_TSC_ADJUST"]
    assert proof["in_stream"] is True
    (msr,) = proof["msrs"]
    written = f"{distinctive(TSC_ADJUST):#x}"
    assert msr["index"] == "0x3b" and msr["written"] == written
    assert written in msr["seen_full"]  # the real host's destination restored it
    assert written not in msr["seen_older"]  # the older kernel's never did, and the migration completed
    assert findings_run["exit"] == 0  # every confirmed loss is covered by a verified patch of the series


def test_each_confirmed_loss_is_stopped_by_its_fix_patch(findings_run: dict[str, Any]) -> None:
    proofs = _proofs(findings_run)
    confirmed = [name for name, proof in proofs.items() if proof["result"] == "confirmed"]
    assert confirmed
    for name in confirmed:
        patched = proofs[name]["patched"]
        assert patched["result"] == "patch-verified", (name, patched["reason"])
        assert f"{name}: host kernel lacks" in patched["older_said"]  # the patch's error_report()
        assert patched["msrs"][0]["written"] in patched["msrs"][0]["seen_full"]  # a full host still restores it


def test_every_vg001_finding_of_the_cpu_gets_a_result(findings_run: dict[str, Any]) -> None:
    expected = {f["subsection"] for f in findings_run["findings"] if f["rule"] == "VG001" and f["unit"] == "i386"}
    proofs = _proofs(findings_run)
    assert set(proofs) == expected and len(expected) == 21
    for name, proof in proofs.items():
        # The analysis is right wherever a run can tell: no finding is delivered anyway, none refused.
        assert proof["result"] in ("confirmed", "not-attempted"), (name, proof["reason"])
        assert proof["reason"], name


def test_msr_findings_this_host_supports_are_confirmed(findings_run: dict[str, Any]) -> None:
    """Each of these puts its MSR only if a has_msr_* flag from the MSR index list is set."""
    host = host_kvm()
    proofs = _proofs(findings_run)
    supported = [name for name in CONFIRMED_HERE if all(int(m["index"], 16) in host.msrs for m in proofs[name]["msrs"])]
    assert "cpu/msr_tsc_adjust" in supported  # every x86 KVM emulates it
    for name in supported:
        assert proofs[name]["result"] == "confirmed", (name, proofs[name]["reason"])
    # Hyper-V state needs KVM_CAP_HYPERV and its MSRs: where the host lacks them, nothing is hidden.
    for name in ("cpu/msr_hyperv_hypercall", "cpu/msr_hyperv_crash"):
        if proofs[name]["result"] == "not-attempted":
            assert "this host's KVM" in proofs[name]["reason"] or "needed()" in proofs[name]["reason"]


def test_negative_controls_are_not_confirmed(controls_run: dict[str, Any]) -> None:
    proofs = _proofs(controls_run)
    assert set(proofs) == set(CONTROLS)
    verdicts = {s["name"]: s["verdict"] for s in controls_run["subsections"]}
    assert [verdicts[name] for name in CONTROLS] == ["unconditional", "unconditional", "checked"]
    for name in CONTROLS:
        assert proofs[name]["result"] != "confirmed", (name, proofs[name]["reason"])
    # The steal-time MSR is hidden from the older destination's index list, and QEMU puts it all the same.
    steal = proofs["cpu/steal_time_msr"]
    assert steal["result"] == "not-reproduced", steal["reason"]
    assert steal["msrs"][0]["written"] in steal["msrs"][0]["seen_older"]


def test_a_subsection_the_patched_tree_checks_is_refused(
    tree: Path, findings_run: dict[str, Any], tmp_path: Path
) -> None:
    """The same run on the tree with fix's patch applied: the analysis says checked, KVM refuses."""
    patches = sorted(Path(findings_run["patch_dir"]).glob("*.patch"))
    build = build_qemu(tree, prove_cache_directory(), patches)  # built by findings_run, reused here
    copy = tmp_path / "qemu"
    shutil.copytree(tree, copy, symlinks=True)
    for patch in patches:
        subprocess.run(["patch", "-p1", "--batch", "-s"], cwd=copy, input=patch.read_bytes(), check=True)
    out = tmp_path / "checked.json"
    args = ["--subsection", "cpu/msr_tsc_adjust", "--qemu", str(build.binary), "--format", "json", "-o", str(out)]
    done = run_cli("prove", str(copy), *args)
    assert done.returncode == 0, done.stderr
    subsection = next(s for s in json.loads(out.read_text())["subsections"] if s["name"] == "cpu/msr_tsc_adjust")
    assert subsection["verdict"] == "checked"
    assert subsection["proof"]["result"] == "refused", subsection["proof"]["reason"]


def test_sigterm_ends_every_qemu_and_removes_the_scratch_files(
    tree: Path, findings_run: dict[str, Any], tmp_path: Path
) -> None:
    """A cancelled CI job: SIGTERM while guests run leaves no QEMU and no scratch directory behind."""
    import os
    import signal
    import sys
    import time

    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    environment = {**os.environ, "TMPDIR": str(scratch_root)}
    command = [sys.executable, "-m", "analyzer", "prove", str(tree), "--format", "json", "--quiet"]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def children() -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in found.stdout.split()]

    def is_qemu(pid: int) -> bool:
        try:
            return "qemu-system" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        except FileNotFoundError:  # it ended between pgrep and now
            return False

    deadline = time.monotonic() + 60
    while not any(is_qemu(pid) for pid in children()):
        assert process.poll() is None and time.monotonic() < deadline, "prove ended before any guest started"
        time.sleep(0.01)
    started = children()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr  # main() turns SIGTERM into an exception: every finally runs
    assert b"terminated" in stderr
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]  # every QEMU is gone
    assert list(scratch_root.iterdir()) == []  # stream, logs, sockets and firmware removed
