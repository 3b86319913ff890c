"""`vmstate-guard prove`'s bad inputs: one line, exit 2, before anything is built or run."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import MINI, run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subsection", "cpu/no_such"], "no i386 CPU subsection named 'cpu/no_such'"),
        (["--patches", "/nonexistent"], "/nonexistent: not a directory of patches"),
        (["--qemu", "/nonexistent", "--patches", str(MINI)], "does not go with --qemu"),
        (["-o", str(MINI / "proof.json")], "inside the analysed tree"),
    ],
)
def test_bad_prove_input_is_one_line_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    if "--patches" in args and args[args.index("--patches") + 1] == str(MINI):
        (tmp_path / "0001-a.patch").write_text('+        error_report("cpu/x: host kernel lacks X; KVM");\n')
        args = [*args[:-1], str(tmp_path)]
    done = run_cli("prove", str(MINI), *args)
    assert done.returncode == 2, done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("vmstate-guard: error:")]
    assert len(error_lines) == 1 and message in error_lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_prove_help_says_what_it_needs_and_how_to_read_it() -> None:
    done = run_cli("prove", "--help")
    assert done.returncode == 0
    for words in ("/dev/kvm", "x86_64", "confirmed", "patch-verified", "--patches", "never in the", "tree"):
        assert words in done.stdout, words


def test_a_host_of_another_architecture_is_told_what_prove_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    from analyzer.errors import InputError
    from analyzer.prove.host import host_kvm

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with pytest.raises(InputError, match="this host is aarch64: other targets need a host of their own architecture"):
        host_kvm()


def test_a_patch_for_a_subsection_not_being_proven_is_refused_before_any_run(tmp_path: Path) -> None:
    (tmp_path / "0001-a.patch").write_text('+        error_report("cpu/xcr0: host kernel lacks KVM_CAP_XCRS; KVM");\n')
    done = run_cli("prove", str(MINI), "--subsection", "cpu/msr_smi_count", "--patches", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "patches 'cpu/xcr0', which is not being proven" in done.stderr
