"""prove's results in each report format, from a run made up here (no KVM needed)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from analyzer.audit import AuditResult, audit
from analyzer.prove.results import CONFIRMED, NOT_ATTEMPTED, PATCH_VERIFIED, MsrSeen, Proof
from analyzer.prove.run import ProofRun
from analyzer.reports import proof_renderer
from support import MINI, REPO

SCHEMA = json.loads((REPO / "analyzer" / "schema" / "audit.schema.json").read_text())
SARIF_SCHEMA = json.loads((REPO / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
VALUE = 0x5A5A000000000034
SEEN = (MsrSeen("MSR_SMI_COUNT", 0x34, VALUE, (0, VALUE), (0,)),)
CONFIRMED_PROOF = Proof(
    "cpu/msr_smi_count",
    "unchecked",
    CONFIRMED,
    "with MSR_SMI_COUNT hidden it never reached KVM",
    ("MSR_SMI_COUNT",),
    SEEN,
    True,
)
PATCHED = replace(CONFIRMED_PROOF, result=PATCH_VERIFIED, reason="the destination fails", patch="0001-x.patch")
SKIPPED = Proof("cpu/pdptrs", "unchecked", NOT_ATTEMPTED, "no guest can set this kind of state yet")


@pytest.fixture(scope="module")
def result() -> AuditResult:
    run = ProofRun((CONFIRMED_PROOF, SKIPPED), (PATCHED,), "10.0.13", "given with --qemu", "x86_64 Linux", "host", 1.0)
    return audit(MINI, ["i386"])._replace(proof_run=run)


def test_json_gives_each_run_finding_its_proof_and_validates(result: AuditResult) -> None:
    document = json.loads(proof_renderer("json")(result))
    jsonschema.validate(document, SCHEMA)
    finding = next(f for f in document["findings"] if f["subsection"] == "cpu/msr_smi_count")
    assert finding["proof"]["result"] == "confirmed"
    assert finding["proof"]["msrs"] == [
        {
            "name": "MSR_SMI_COUNT",
            "index": "0x34",
            "written": hex(VALUE),
            "seen_full": ["0x0", hex(VALUE)],
            "seen_older": ["0x0"],
        }
    ]
    assert finding["proof"]["patched"]["result"] == "patch-verified"
    assert finding["proof"]["patched"]["patch"] == "0001-x.patch"
    assert document["proof_run"] == {
        "qemu": {"version": "10.0.13", "built": "given with --qemu"},
        "host": "x86_64 Linux",
        "cpu": "host",
    }
    untouched = next(f for f in document["findings"] if f["subsection"] == "cpu/xcr0")
    assert "proof" not in untouched  # not run


def test_json_of_audit_has_no_proof(result: AuditResult) -> None:
    document = json.loads(proof_renderer("json")(result._replace(proof_run=None)))
    assert "proof_run" not in document and all("proof" not in f for f in document["findings"])


def test_sarif_carries_the_proof_in_result_properties(result: AuditResult) -> None:
    document = json.loads(proof_renderer("sarif")(result))
    jsonschema.validate(document, SARIF_SCHEMA)
    results = {r["properties"]["subsection"]: r["properties"] for r in document["runs"][0]["results"]}
    assert results["cpu/msr_smi_count"]["proof"]["result"] == "confirmed"
    assert "proof" not in results["cpu/xcr0"]


def test_html_adds_a_reproduced_on_kvm_step(result: AuditResult) -> None:
    page = proof_renderer("html")(result)
    assert "reproduced on KVM: confirmed" in page
    assert "with fix&#39;s patch: patch-verified" in page
    assert "0001-x.patch: the destination fails" in page
    assert 'class="step-proof-confirmed"' in page


def test_text_lists_one_line_per_subsection_then_counts(result: AuditResult, tmp_path: Path) -> None:
    lines = proof_renderer("text")(result).splitlines()
    assert lines[0] == (
        "target/i386/machine.c:21: confirmed: cpu/msr_smi_count (unchecked): with MSR_SMI_COUNT hidden it never "
        "reached KVM"
    )
    assert lines[1].startswith("target/i386/machine.c:21: patch-verified [0001-x.patch]: cpu/msr_smi_count")
    assert lines[2].startswith("target/i386/machine.c:109: not-attempted: cpu/pdptrs")
    assert lines[3] == "2 subsections run under KVM: 1 confirmed, 1 not-attempted"
    assert lines[4] == "1 patch of the series run on the patched tree: 1 patch-verified"


def test_text_escapes_names_from_the_tree(result: AuditResult) -> None:
    # A subsection name with an escape sequence and a newline (it comes from the tree's C source).
    hostile = replace(SKIPPED, subsection="cpu/x\x1b]0;pwned\x07\nforged")
    run = replace(result.proof_run, proofs=(hostile,), patched=())
    text = proof_renderer("text")(result._replace(proof_run=run))
    assert "\x1b" not in text and "\x07" not in text
    assert "cpu/x\\x1b]0;pwned\\x07\\nforged" in text
    assert not any(line.startswith("forged") for line in text.splitlines())
