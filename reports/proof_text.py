"""`vmstate-guard prove` on a terminal: one line per subsection run, then a count per result."""

from __future__ import annotations

from collections import Counter

from ..audit import AuditResult
from ..prove.results import NOT_ATTEMPTED, RESULTS, Proof
from . import printable


def _line(where: str, proof: Proof, label: str) -> str:
    return f"{where}: {label}: {proof.subsection} ({proof.verdict}): {proof.reason}"


def _spread(proofs: tuple[Proof, ...]) -> str:
    counts = Counter(proof.result for proof in proofs)
    return ", ".join(f"{counts[r]} {r}" for r in RESULTS if counts[r])


def render(result: AuditResult) -> str:
    run = result.proof_run
    if run is None:
        raise ValueError("proof_text renders the results of prove")
    at = {
        (report.description.name or report.description.symbol): f"{report.description.path}:{report.description.line}"
        for report in result.subsections
    }
    lines = []
    for proof in run.proofs:
        lines.append(_line(at.get(proof.subsection, "?"), proof, proof.result))
        patched = run.patched_proof_of(proof.subsection)
        if patched is not None and patched.result != NOT_ATTEMPTED:  # else it says the same again
            lines.append(_line(at.get(proof.subsection, "?"), patched, f"{patched.result} [{patched.patch}]"))
    noun = "subsection" if len(run.proofs) == 1 else "subsections"
    lines.append(f"{len(run.proofs)} {noun} run under KVM: {_spread(run.proofs)}")
    if run.patched:
        noun = "patch" if len(run.patched) == 1 else "patches"
        lines.append(f"{len(run.patched)} {noun} of the series run on the patched tree: {_spread(run.patched)}")
    lines.append(f"QEMU {run.qemu_version}, {run.built}; host {run.host}; -cpu {run.cpu}")
    # Subsection names and paths come from the tree: escaped as in the audit's text.
    return "\n".join(printable(line) for line in lines) + "\n"
