"""`vmstate-guard prove`: audit the x86 CPU unit, then run its findings as migrations."""

from __future__ import annotations

import platform
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..audit import Analysis, AuditResult
from ..errors import InputError
from ..verdicts import SubsectionReport
from . import DEFAULT_CPU, Progress
from .build import QemuBuild, build_qemu, given_binary
from .constants import read_defines
from .experiment import Observation, run_experiment
from .host import host_kvm
from .interposer import build_interposer
from .plan import Plan, plan_for
from .results import Proof, classify, classify_patched, not_attempted

TARGET = "i386"
# Where the MSR indices and KVM_CAP_* numbers are defined, in every layout since 5.2.
HEADERS = (
    "target/i386/cpu.h",
    "target/i386/kvm/hyperv-proto.h",
    "target/i386/hyperv-proto.h",
    "include/hw/hyperv/hyperv-proto.h",
    "linux-headers/linux/kvm.h",
    "linux-headers/asm-x86/kvm.h",
    "include/standard-headers/asm-x86/kvm_para.h",
)


@dataclass(frozen=True)
class ProofRun:
    """What `prove` ran and found, to join the audit's evidence in the reports."""

    proofs: tuple[Proof, ...]  # one per subsection, unpatched
    patched: tuple[Proof, ...]  # one per subsection a patch of --patches covers
    qemu_version: str
    built: str  # how the binary came to be
    host: str  # "x86_64 Linux 6.1.0"
    cpu: str
    seconds: float

    def proof_of(self, subsection: str) -> Proof | None:
        return next((p for p in self.proofs if p.subsection == subsection), None)

    def patched_proof_of(self, subsection: str) -> Proof | None:
        return next((p for p in self.patched if p.subsection == subsection), None)


@dataclass(frozen=True)
class SeriesPatch:
    path: Path
    subsection: str
    message: str  # what the patched post_load prints
    mode: str  # fail or warn


_REPORT_CALL = re.compile(r"\b(error_report|warn_report)\(((?:\s*\+?\s*\"(?:[^\"\\]|\\.)*\")+)")
_LITERAL = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")


def read_series(directory: Path) -> list[SeriesPatch]:
    """The patches `fix` wrote into `directory`, with the subsection and message of each."""
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory of patches (give --patches the -o of vmstate-guard fix)")
    series: list[SeriesPatch] = []
    for path in sorted(directory.glob("*.patch")):
        added = "\n".join(line[1:] for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("+"))
        call = _REPORT_CALL.search(added)
        if call is None:
            raise InputError(f"{path}: not a vmstate-guard fix patch (no error_report or warn_report in it)")
        message = "".join(_LITERAL.findall(call[2]))
        series.append(
            SeriesPatch(path, message.split(":", 1)[0], message, "fail" if call[1] == "error_report" else "warn")
        )
    if not series:
        raise InputError(f"{directory}: holds no .patch files")
    return series


def cpu_unit(result: AuditResult) -> Analysis:
    for analysis in result.analyses:
        if analysis.profile.target == TARGET and analysis.profile.unit == "cpu":
            return analysis
    raise InputError(f"the tree has no {TARGET} CPU unit: prove runs x86 guests only")


def chosen_reports(result: AuditResult, names: Sequence[str]) -> list[SubsectionReport]:
    """The VG001 findings of the x86 CPU unit, or the subsections `names` lists."""
    analysis = cpu_unit(result)
    by_name = {(r.description.name or r.description.symbol): r for r in analysis.subsections}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise InputError(f"no {TARGET} CPU subsection named {missing[0]!r} (vmstate-guard audit lists them)")
    if names:
        return [by_name[name] for name in dict.fromkeys(names)]
    unit = analysis.profile.label
    return [by_name[n] for n in sorted({f.subsection for f in result.findings if f.rule == "VG001" and f.unit == unit})]


def prove(
    tree: Path,
    result: AuditResult,
    cache: Path,
    names: Sequence[str] = (),
    qemu: Path | None = None,
    patches: Path | None = None,
    cpu: str = DEFAULT_CPU,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> ProofRun:
    """Run each chosen subsection as a migration, and each patch of `patches` on a patched build."""
    tell = progress or (lambda _message: None)
    started = time.monotonic()
    series = read_series(patches) if patches else []
    if series and qemu:
        raise InputError("--patches builds the patched tree itself; it does not go with --qemu")
    reports = chosen_reports(result, names)
    chosen = {report.description.name for report in reports}
    unknown = [patch for patch in series if patch.subsection not in chosen]
    if unknown:  # before anything is built or run
        raise InputError(
            f"{unknown[0].path}: patches {unknown[0].subsection!r}, which is not being proven "
            "(name it with --subsection, or leave --subsection out)"
        )
    host = host_kvm()
    defines = read_defines(tree, HEADERS)
    plans = [plan_for(report, cpu_unit(result), defines, host) for report in reports]
    runnable = [plan for plan in plans if plan.skip is None]
    build = given_binary(qemu, tree) if qemu else build_qemu(tree, cache, progress=tell)
    interposer = build_interposer(cache / "interposer")
    proofs = {plan.subsection: not_attempted(plan, plan.skip) for plan in plans if plan.skip is not None}
    if runnable:
        seen = _observe(build, runnable, interposer, cpu, timeout, tell)
        proofs.update((plan.subsection, classify(plan, seen)) for plan in runnable)
    patched: list[Proof] = []
    if series:
        patched = _prove_patches(tree, cache, series, plans, interposer, cpu, timeout, tell)
    return ProofRun(
        tuple(proofs[plan.subsection] for plan in plans),
        tuple(patched),
        build.version,
        build.how,
        f"{platform.machine()} Linux {platform.release()}",
        cpu,
        time.monotonic() - started,
    )


def _observe(
    build: QemuBuild, plans: list[Plan], interposer: Path, cpu: str, timeout: float, tell: Progress
) -> Observation:
    """One experiment in a scratch directory that is gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="vmstate-guard-prove.") as scratch:
        return run_experiment(build, plans, interposer, Path(scratch), cpu, timeout, tell)


def _prove_patches(
    tree: Path,
    cache: Path,
    series: list[SeriesPatch],
    plans: list[Plan],
    interposer: Path,
    cpu: str,
    timeout: float,
    tell: Progress,
) -> list[Proof]:
    by_subsection = {plan.subsection: plan for plan in plans}
    build = build_qemu(tree, cache, [patch.path for patch in series], progress=tell)
    runnable = [by_subsection[p.subsection] for p in series if by_subsection[p.subsection].skip is None]
    out: list[Proof] = []
    seen = _observe(build, runnable, interposer, cpu, timeout, tell) if runnable else None
    for patch in series:
        plan = by_subsection[patch.subsection]
        if plan.skip is not None or seen is None:
            out.append(not_attempted(plan, plan.skip or "not run", patch.path.name))
        else:
            out.append(classify_patched(plan, seen, patch.message, patch.mode, patch.path.name))
    return out
