#!/usr/bin/env python3
"""Time `vmstate-guard prove` against the floor of what it runs: one QEMU start under KVM.

    python scripts/benchmark_prove.py QEMU_DIR [--repeat N]

Needs /dev/kvm and the tree's QEMU already built by a first `prove` (the
build is cached and not measured here). Rows, each min/median/max over N
whole-process runs in this invocation:
  - floor: start qemu-system-x86_64 under KVM with prove's machine and quit it;
  - the audit of the x86 target, which prove runs first;
  - one finding: `prove --subsection cpu/msr_tsc_adjust` (source, stream, two destinations);
  - the whole x86 CPU unit: `prove` on every VG001 finding.
Read the ratios to the floor, and the per-finding time of the whole unit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analyzer.prove import DEFAULT_CPU
from analyzer.prove.build import BINARY, prove_cache_directory
from analyzer.prove.firmware import firmware_image


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=False, capture_output=True)
    return time.perf_counter() - started


def _row(name: str, samples: list[float], floor: float) -> str:
    low, mid, high = min(samples), statistics.median(samples), max(samples)
    return f"{name:<42} {low:7.2f} {mid:7.2f} {high:7.2f} s   {mid / floor:6.1f}x floor"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    binaries = sorted(prove_cache_directory().glob(f"builds/*/bin/original/{BINARY}"))
    if not binaries:
        print("benchmark_prove: no cached build; run `vmstate-guard prove QEMU_DIR` once first", file=sys.stderr)
        return 2
    binary = max(binaries, key=lambda path: path.stat().st_mtime)
    scratch = Path(tempfile.mkdtemp(prefix="benchmark-prove."))
    firmware = scratch / "firmware.bin"
    firmware.write_bytes(firmware_image([]))
    floor_command = [str(binary), "-machine", "pc,accel=kvm", "-nodefaults", "-display", "none", "-S", "-m", "32"]
    floor_command += ["-cpu", DEFAULT_CPU, "-bios", str(firmware), "-global", "apic-common.vapic=off", "-qmp", "stdio"]
    cli = [sys.executable, "-m", "analyzer", "prove", str(args.tree), "--format", "json", "--quiet"]
    audit = [sys.executable, "-m", "analyzer", "audit", str(args.tree), "--target", "i386", "--format", "json"]

    def floor() -> float:
        started = time.perf_counter()
        quit_now = b'{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n'
        done = subprocess.run(floor_command, input=quit_now, check=False, capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"benchmark_prove: the floor's QEMU failed: {done.stderr.decode().strip()}")
        return time.perf_counter() - started

    floors = [floor() for _ in range(args.repeat)]
    audits = [_timed(audit) for _ in range(args.repeat)]
    one = [_timed([*cli, "--subsection", "cpu/msr_tsc_adjust"]) for _ in range(args.repeat)]
    out = scratch / "p.json"
    unit = [_timed([*cli, "-o", str(out)]) for _ in range(args.repeat)]
    proofs = [s for s in json.loads(out.read_text())["subsections"] if "proof" in s]
    shutil.rmtree(scratch)
    base = statistics.median(floors)
    print(f"{'':<42} {'min':>7} {'median':>7} {'max':>7}")
    print(_row("floor: one QEMU start under KVM", floors, base))
    print(_row("audit --target i386 (prove's first step)", audits, base))
    print(_row("prove: one finding", one, base))
    print(_row(f"prove: x86 CPU unit ({len(proofs)} findings)", unit, base))
    migrations = statistics.median(unit) - statistics.median(audits)
    each = migrations / len(proofs)
    print(f"per finding in the unit run, audit aside: {each:.2f} s ({each / base:.1f}x floor)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
