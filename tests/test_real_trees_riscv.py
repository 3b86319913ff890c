"""RISC-V verdicts on real QEMU releases, checked by hand against their C source
(target/riscv/machine.c and target/riscv/kvm.c or kvm/kvm-cpu.c). Skipped
without VMSTATE_GUARD_QEMU_5/_7/_10."""

from __future__ import annotations

from functools import cache

import pytest

from analyzer.audit import AuditResult, audit
from analyzer.errors import InputError
from support import real_tree


@cache
def _audit(major: str) -> AuditResult:
    return audit(real_tree(major), "riscv")


def test_qemu_5_has_no_riscv_kvm() -> None:
    with pytest.raises(InputError, match="riscv KVM support"):
        audit(real_tree("5"), "riscv")


@pytest.mark.parametrize(
    ("major", "expected"),
    [
        # 7.2: no host probe at all; the timer is put from the run-state handler.
        ("7", {"cpu/kvmtimer": "unconditional"}),
        # 10.0: vregs only if kvm_v_vlenb.supported, senvcfg only if its
        # kvm_csr_cfgs[] entry is supported; both from the register list.
        ("10", {"cpu/vector": "unchecked", "cpu/envcfg": "unchecked", "cpu/kvmtimer": "unconditional"}),
    ],
)
def test_riscv_verdicts(major: str, expected: dict[str, str]) -> None:
    verdicts = {r.description.name: r.verdict for r in _audit(major).analysis.subsections}
    assert {name: v for name, v in verdicts.items() if v != "not-kvm"} == expected
    assert len(verdicts) == {"7": 8, "10": 15}[major]
