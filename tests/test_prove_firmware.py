"""The -bios image prove's guests run: decoded back with an independent disassembler."""

from __future__ import annotations

import pytest

from analyzer.prove.firmware import DONE, FAULTED, IMAGE_SIZE, WROTE, MsrWrite, firmware_image, taken_writes

capstone = pytest.importorskip("capstone", reason="capstone (a test dependency) decodes the firmware")

WRITES = [MsrWrite(0x3B, 0x5A5A00000000003B), MsrWrite(0xC0010015, 1 << 18)]


def _decode(image: bytes, start: int, stop_at: str) -> list[tuple[int, str, str]]:
    disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
    out = []
    for instruction in disassembler.disasm(image[start:], start):
        out.append((instruction.address, instruction.mnemonic, instruction.op_str))
        if instruction.mnemonic == stop_at:
            break
    return out


def test_reset_vector_jumps_to_the_start_of_the_image() -> None:
    image = firmware_image(WRITES)
    assert len(image) == IMAGE_SIZE
    # The vCPU starts at F000:FFF0, the image's last 16 bytes.
    assert _decode(image, 0xFFF0, "ljmp")[0][1:] == ("ljmp", "0xf000:0")


def test_each_write_loads_ecx_edx_eax_then_wrmsr_then_reports_on_com1() -> None:
    code = _decode(firmware_image(WRITES), 0, "hlt")
    wrmsrs = [i for i, (_, mnemonic, _) in enumerate(code) if mnemonic == "wrmsr"]
    assert len(wrmsrs) == len(WRITES)
    for position, write in zip(wrmsrs, WRITES, strict=True):
        loads = {
            op.split(", ")[0]: int(op.split(", ")[1], 0) for _, m, op in code[position - 3 : position] if m == "mov"
        }
        assert loads == {"ecx": write.index, "eax": write.value & 0xFFFFFFFF, "edx": write.value >> 32}
        after = [(m, op) for _, m, op in code[position + 1 : position + 4]]
        assert after == [("mov", "dx, 0x3f8"), ("mov", f"al, {WROTE[0]:#x}"), ("out", "dx, al")]
    # cli first, so that nothing wakes the final hlt; DONE printed just before it.
    assert code[0][1] == "cli"
    assert [(m, op) for _, m, op in code[-4:-1]] == [
        ("mov", "dx, 0x3f8"),
        ("mov", f"al, {DONE[0]:#x}"),
        ("out", "dx, al"),
    ]


def test_the_gp_vector_points_at_a_handler_that_skips_the_wrmsr() -> None:
    image = firmware_image(WRITES)
    code = _decode(image, 0, "hlt")
    vector = {op.split(", ")[0]: int(op.split(", ")[1], 0) for _, m, op in code if m == "mov" and "word ptr" in op}
    assert vector["word ptr [0x36]"] == 0xF000  # IVT entry 13 (#GP) = F000:offset
    handler = _decode(image, vector["word ptr [0x34]"], "iret")
    assert [(m, op) for _, m, op in handler] == [
        ("mov", "dx, 0x3f8"),
        ("mov", f"al, {FAULTED[0]:#x}"),
        ("out", "dx, al"),
        ("push", "bp"),
        ("mov", "bp, sp"),
        ("add", "word ptr [bp + 2], 2"),  # the saved IP, past the two bytes of wrmsr
        ("pop", "bp"),
        ("iret", ""),
    ]


def test_taken_writes_reads_the_serial_markers() -> None:
    assert taken_writes(WROTE + FAULTED + WROTE + DONE, WRITES) == (True, False)
    assert taken_writes(WROTE + WROTE + DONE, WRITES) == (True, True)
    assert taken_writes(WROTE, WRITES) is None  # still running
    assert taken_writes(WROTE + DONE, WRITES) is None  # a marker short: not this firmware


def test_out_of_range_writes_are_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        firmware_image([MsrWrite(1 << 32, 0)])
    with pytest.raises(ValueError, match="do not fit"):
        firmware_image([MsrWrite(0x10, 0)] * 3000)
