"""The KVM ioctl interposer of `prove`: built once, hiding probes and logging what reaches KVM.

A small C program (PROBE) calls the wrapped ioctls on the real /dev/kvm,
once without the interposer and once with it, and prints what came back;
the tests compare the two runs and the interposer's log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from analyzer.errors import InputError
from analyzer.prove.interposer import Hide, KvmLog, build_interposer, interposer_env, read_log

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: `cc` is not on PATH")

# linux/kvm.h numbers, checked against the header of linux-libc-dev 6.1.
KVM_CAP_USER_MEMORY = 3
KVM_CAP_NR_VCPUS = 9  # the recommended vCPU count: positive on every host
NR_GET_MSRS = 0x88
NR_SET_IRQCHIP = 0x63
NR_SET_VCPU_EVENTS = 0xA0
# What the probe writes with KVM_SET_MSRS: SYSENTER_CS and SYSENTER_ESP, which
# every x86 vCPU has, then an index no CPU has.
PROBE_MSRS = ((0x174, 0x5A5A), (0x175, 0x5A5A000000000001), (0x5A5A0000, 7))
ABSENT_MSR = 0x5A5A0000

PROBE = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

/* QEMU's kvm_ioctl() passes the request as an int: with "signext", so do we.
   KVM_GET_MSR_INDEX_LIST (_IOWR) and KVM_SET_IRQCHIP (_IOR) have bit 31 set. */
static int sign_extend;

static unsigned long req(unsigned long request)
{
    return sign_extend ? (unsigned long)(int)request : request;
}

/* Both calls QEMU makes: the sizing one (nmsrs 0, E2BIG), then the real one. */
static void print_list(int fd, unsigned long request, const char *name)
{
    /* The kernel fills in only the count here: indices that look like a
       hidden MSR show whether the interposer wrongly filters this answer. */
    struct kvm_msr_list *probe = calloc(1, sizeof(*probe) + 4096 * sizeof(probe->indices[0]));
    int ret, err;
    struct kvm_msr_list *list;

    for (int i = 0; i < 4096; i++) {
        probe->indices[i] = 0x174;
    }
    ret = ioctl(fd, req(request), probe);
    err = errno;
    printf("%s-first %d %d %u\n", name, ret, ret < 0 ? err : 0, probe->nmsrs);
    list = calloc(1, sizeof(*list) + probe->nmsrs * sizeof(list->indices[0]));
    list->nmsrs = probe->nmsrs;
    free(probe);
    ret = ioctl(fd, req(request), list);
    printf("%s %d %u", name, ret, list->nmsrs);
    for (unsigned i = 0; ret == 0 && i < list->nmsrs; i++) {
        printf(" 0x%x", list->indices[i]);
    }
    printf("\n");
    free(list);
}

static void print_hex(const char *name, const void *data, size_t size)
{
    const unsigned char *p = data;

    printf("%s ", name);
    for (size_t i = 0; i < size; i++) {
        printf("%02x", p[i]);
    }
    printf("\n");
}

/* _IOW requests with the largest payload, on a descriptor that is no KVM. */
static int flood(long count)
{
    static char payload[_IOC_SIZEMASK];
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int ret = 0;

    for (long i = 0; i < count; i++) {
        ret = ioctl(null, _IOW(KVMIO, 0xff, char[_IOC_SIZEMASK]), payload);
    }
    printf("flood %d %d\n", ret, ret < 0 ? errno : 0);
    return 0;
}

int main(int argc, char **argv)
{
    int sys, vm, vcpu, null;

    if (argc > 2 && strcmp(argv[1], "flood") == 0) {
        return flood(atol(argv[2]));
    }
    sign_extend = argc > 1 && strcmp(argv[1], "signext") == 0;
    sys = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (sys < 0) {
        printf("skip: cannot open /dev/kvm: %s\n", strerror(errno));
        return 77;
    }
    vm = ioctl(sys, req(KVM_CREATE_VM), 0UL);
    if (vm < 0) {
        printf("skip: KVM_CREATE_VM fails: %s\n", strerror(errno));
        return 77;
    }
    print_list(sys, KVM_GET_MSR_INDEX_LIST, "msr-list");
    print_list(sys, KVM_GET_MSR_FEATURE_INDEX_LIST, "feature-list");

    /* The capabilities to ask about are the remaining arguments. */
    null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 2; i < argc; i++) {
        unsigned long cap = strtoul(argv[i], NULL, 0);
        int s = ioctl(sys, req(KVM_CHECK_EXTENSION), cap);
        int v = ioctl(vm, req(KVM_CHECK_EXTENSION), cap);
        /* /dev/null knows no KVM ioctl: an answer of 0 never reached the kernel. */
        int n = ioctl(null, req(KVM_CHECK_EXTENSION), cap);

        printf("cap %lu %d %d %d\n", cap, s, v, n < 0 ? -errno : n);
    }

    if (ioctl(vm, req(KVM_CREATE_IRQCHIP), 0UL) != 0) {
        perror("KVM_CREATE_IRQCHIP");
        return 1;
    }
    {
        struct kvm_irqchip chip = {.chip_id = KVM_IRQCHIP_IOAPIC};

        if (ioctl(vm, req(KVM_GET_IRQCHIP), &chip) != 0) {
            perror("KVM_GET_IRQCHIP");
            return 1;
        }
        printf("irqchip-ret %d\n", ioctl(vm, req(KVM_SET_IRQCHIP), &chip));
        print_hex("irqchip", &chip, sizeof(chip));
    }

    vcpu = ioctl(vm, req(KVM_CREATE_VCPU), 0UL);
    if (vcpu < 0) {
        perror("KVM_CREATE_VCPU");
        return 1;
    }
    printf("vcpu-fd %d\n", vcpu);
    {
        struct {
            struct kvm_msrs head;
            struct kvm_msr_entry entries[3];
        } msrs = {
            .head = {.nmsrs = 3},
            .entries = {
                {.index = 0x174, .data = 0x5a5a},
                {.index = 0x175, .data = 0x5a5a000000000001ULL},
                {.index = 0x5a5a0000, .data = 7},
            },
        };
        printf("set-msrs %d\n", ioctl(vcpu, req(KVM_SET_MSRS), &msrs));
    }
    {
        struct {
            struct kvm_msrs head;
            struct kvm_msr_entry entries[1];
        } msrs = {.head = {.nmsrs = 1}, .entries = {{.index = 0x175}}};

        printf("get-msrs %d 0x%llx\n", ioctl(vcpu, req(KVM_GET_MSRS), &msrs),
               (unsigned long long)msrs.entries[0].data);
    }
    {
        struct kvm_vcpu_events events;

        if (ioctl(vcpu, req(KVM_GET_VCPU_EVENTS), &events) != 0) {
            perror("KVM_GET_VCPU_EVENTS");
            return 1;
        }
        printf("events-ret %d\n", ioctl(vcpu, req(KVM_SET_VCPU_EVENTS), &events));
        print_hex("events", &events, sizeof(events));
    }
    {
        int khz = ioctl(vcpu, req(KVM_GET_TSC_KHZ), 0UL);

        /* The host's own frequency: accepted even without TSC scaling. */
        printf("tsc-khz %d %d\n", khz, ioctl(vcpu, req(KVM_SET_TSC_KHZ), (unsigned long)khz));
    }
    return 0;
}
"""


@dataclass(frozen=True)
class ProbeRun:
    """What the probe printed: each line's words keyed by its first, the "cap" lines apart."""

    lines: dict[str, list[str]]
    cap_rows: list[list[str]]

    def ints(self, key: str) -> list[int]:
        return [int(word, 0) for word in self.lines[key]]

    def caps(self) -> dict[int, tuple[int, int, int]]:
        """Per capability asked: the answers on the system fd, the VM fd and /dev/null."""
        return {int(cap): (int(s), int(v), int(n)) for cap, s, v, n in self.cap_rows}


def run_probe(probe: Path, mode: str, caps: tuple[int, ...], env: dict[str, str] | None = None) -> ProbeRun:
    result = subprocess.run(
        [str(probe), mode, *map(str, caps)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode == 77:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    lines: dict[str, list[str]] = {}
    cap_rows: list[list[str]] = []
    for line in result.stdout.splitlines():
        key, *words = line.split()
        if key == "cap":
            cap_rows.append(words)
        else:
            lines[key] = words
    return ProbeRun(lines, cap_rows)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: `cc` is not on PATH")
    return build_interposer(tmp_path_factory.mktemp("interposer-cache"))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory, library: Path) -> Path:
    directory = tmp_path_factory.mktemp("probe")
    (directory / "probe.c").write_text(PROBE)
    subprocess.run(
        ["cc", "-O2", "-Wall", "-Werror", "-o", "probe", "probe.c"], cwd=directory, check=True, capture_output=True
    )
    return directory / "probe"


@dataclass(frozen=True)
class Experiment:
    real: ProbeRun
    hidden: ProbeRun
    hide: Hide
    log: KvmLog
    raw_log: str


@pytest.fixture(scope="module", params=["plain", "signext"])
def experiment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, library: Path, probe: Path
) -> Experiment:
    """The probe run on the real KVM, then under the interposer hiding what the real run showed present."""
    mode: str = request.param
    caps = (KVM_CAP_NR_VCPUS, KVM_CAP_USER_MEMORY)
    real = run_probe(probe, mode, caps)
    index_list = real.ints("msr-list")[2:]
    feature_list = real.ints("feature-list")[2:]
    assert len(index_list) >= 2, "the host lists fewer than two MSRs"
    assert feature_list, "the host lists no feature MSR"
    assert ABSENT_MSR not in index_list
    # Two MSRs the host has (one of them the probe's KVM_SET_MSRS writes), one
    # feature MSR, and one MSR no host has, which must not count as a fired probe.
    hide = Hide(msrs=(0x174, index_list[-1], feature_list[0], ABSENT_MSR), caps=(KVM_CAP_NR_VCPUS,))
    log = tmp_path_factory.mktemp("kvm-log") / "kvm.log"
    hidden = run_probe(probe, mode, caps, interposer_env(library, hide, log))
    text = log.read_text()
    return Experiment(real, hidden, hide, read_log(log), text)


def test_interposer_is_compiled_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: `cc` is not on PATH")
    calls = tmp_path / "calls"
    wrapper = tmp_path / "cc-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec cc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    cache = tmp_path / "cache"

    first = build_interposer(cache)
    built = first.stat()
    second = build_interposer(cache)

    assert second == first
    assert second.stat().st_ino == built.st_ino and second.stat().st_mtime_ns == built.st_mtime_ns
    compiles = [line for line in calls.read_text().splitlines() if "--version" not in line]
    assert len(compiles) == 1 and "-shared" in compiles[0]
    # Nothing half-built is left next to the library.
    assert sorted(path.suffix for path in cache.iterdir()) == [".log", ".so"]
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(first)], capture_output=True, text=True, check=True)
    assert " T ioctl" in symbols.stdout


def test_another_compiler_version_builds_another_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: `cc` is not on PATH")
    wrapper = tmp_path / "cc-wrapper"
    wrapper.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "cc $FAKE_VERSION"; exit 0; fi\nexec cc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    monkeypatch.setenv("FAKE_VERSION", "1")
    first = build_interposer(tmp_path)
    monkeypatch.setenv("FAKE_VERSION", "2")
    second = build_interposer(tmp_path)
    assert first != second and first.is_file() and second.is_file()


def test_failed_build_names_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrapper = tmp_path / "cc-wrapper"
    wrapper.write_text(
        '#!/bin/sh\nif [ "$1" = --version ]; then echo "broken cc 1"; exit 0; fi\necho "no such header" >&2\nexit 1\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    cache = tmp_path / "cache"
    with pytest.raises(InputError) as raised:
        build_interposer(cache)
    message = str(raised.value)
    assert "\n" not in message
    logs = list(cache.glob("*.log"))
    assert len(logs) == 1 and str(logs[0]) in message
    assert "no such header" in logs[0].read_text()
    assert not list(cache.glob("*.so"))
    assert not list(cache.glob(".*"))


def test_missing_compiler_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(InputError, match=r"no C compiler .*no-such-cc"):
        build_interposer(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_hidden_msrs_leave_both_lists(experiment: Experiment) -> None:
    real, hidden, hide = experiment.real, experiment.hidden, experiment.hide
    for name in ("msr-list", "feature-list"):
        # The sizing call is the kernel's own: E2BIG (7) and the full count.
        assert hidden.ints(f"{name}-first") == real.ints(f"{name}-first")
        assert hidden.ints(f"{name}-first")[:2] == [-1, 7]
        real_ret, real_count, *real_indices = real.ints(name)
        ret, count, *indices = hidden.ints(name)
        expected = [index for index in real_indices if index not in hide.msrs]
        assert real_count == len(real_indices) > len(expected)
        assert (ret, count, indices) == (real_ret, len(expected), expected)
    present = set(real.ints("msr-list")[2:]) | set(real.ints("feature-list")[2:])
    assert experiment.log.hidden_msrs == set(hide.msrs) & present
    assert ABSENT_MSR not in experiment.log.hidden_msrs


def test_hidden_cap_answers_zero_on_system_and_vm_fds(experiment: Experiment) -> None:
    real, hidden = experiment.real.caps(), experiment.hidden.caps()
    system, vm, _ = real[KVM_CAP_NR_VCPUS]
    assert system > 0 and vm > 0, "the host's KVM does not report KVM_CAP_NR_VCPUS"
    # 0 even on /dev/null, where the kernel would say ENOTTY: the kernel was not asked.
    assert real[KVM_CAP_NR_VCPUS][2] < 0
    assert hidden[KVM_CAP_NR_VCPUS] == (0, 0, 0)
    # A capability not hidden still gets the kernel's answer.
    assert hidden[KVM_CAP_USER_MEMORY] == real[KVM_CAP_USER_MEMORY]
    assert real[KVM_CAP_USER_MEMORY][:2] == (1, 1)
    assert experiment.log.hidden_caps == {KVM_CAP_NR_VCPUS}


def test_set_msrs_entries_are_logged_with_what_the_kernel_accepted(experiment: Experiment) -> None:
    accepted = experiment.hidden.ints("set-msrs")[0]
    # KVM_SET_MSRS stops at the first MSR it refuses: the absent one.
    assert accepted == experiment.real.ints("set-msrs")[0] == 2
    assert experiment.log.msr_writes == PROBE_MSRS[:accepted]
    assert experiment.log.msr_rejected == PROBE_MSRS[accepted:]
    assert experiment.log.msr_values(0x175) == (0x5A5A000000000001,)
    assert experiment.log.msr_values(ABSENT_MSR) == ()
    vcpu = experiment.hidden.ints("vcpu-fd")[0]
    assert f"set-msr 0x175 0x5a5a000000000001 fd={vcpu}" in experiment.raw_log.splitlines()


def test_payloads_handed_to_kvm_are_logged(experiment: Experiment) -> None:
    hidden = experiment.hidden
    assert hidden.ints("irqchip-ret") == hidden.ints("events-ret") == [0]
    # KVM_SET_IRQCHIP is declared _IOR yet hands state in; KVM_SET_VCPU_EVENTS is
    # _IOW. The queries (KVM_GET_MSRS, the _IOR and _IOWR gets) and the _IO
    # requests are not logged.
    assert experiment.log.payloads == (
        (NR_SET_IRQCHIP, bytes.fromhex(hidden.lines["irqchip"][0])),
        (NR_SET_VCPU_EVENTS, bytes.fromhex(hidden.lines["events"][0])),
    )
    assert NR_GET_MSRS not in {nr for nr, _ in experiment.log.payloads}
    khz, ret = hidden.ints("tsc-khz")
    assert khz > 0 and ret == 0
    assert experiment.log.tsc_khz == (khz,)
    assert len(experiment.log.pids) == 1 and not experiment.log.truncated


def test_read_log_reads_every_line_kind(tmp_path: Path) -> None:
    log = tmp_path / "kvm.log"
    log.write_text(
        "config-error VMSTATE_GUARD_HIDE_MSRS zz\n"
        "start pid=41 hide-msrs=0x3b,0x10a hide-caps=126\n"
        "hide-msr 0x3b list=index\n"
        "hide-msr 0x10a list=feature\n"
        "hide-msr 0x3b list=index\n"
        "hide-cap 126 fd=4\n"
        # Two vCPUs' KVM_SET_MSRS calls interleaved: fd 12 accepts both, fd 13 one of two.
        "set-msr 0x174 0x1 fd=12\n"
        "set-msr 0x174 0x2 fd=13\n"
        "set-msr 0x175 0x5a5a000000000001 fd=12\n"
        "set-msr 0x176 0x3 fd=13\n"
        "set-msrs-ret 1 fd=13\n"
        "set-msrs-ret 2 fd=12\n"
        # A call that failed outright: nothing reached KVM.
        "set-msr 0x10 0x4 fd=12\n"
        "set-msrs-ret -22 fd=12\n"
        "set nr=0xa0 size=4 fd=12 ret=0 00ff10ab\n"
        "set nr=0xa5 size=2 fd=12 ret=-22 abcd\n"
        "set nr=0x46 size=0 fd=3 ret=0\n"
        "set-tsc-khz 2500000 fd=12 ret=0\n"
        "set-tsc-khz 1000 fd=12 ret=-22\n"
        "start pid=42 hide-msrs= hide-caps=\n"
        # A call still running when the log ended: it may have reached KVM.
        "set-msr 0x3b 0x9 fd=14\n"
        "truncated\n"
        "set-msr 0x3b 0x"  # killed mid-line
    )
    assert read_log(log) == KvmLog(
        msr_writes=((0x174, 0x2), (0x174, 0x1), (0x175, 0x5A5A000000000001), (0x3B, 0x9)),
        hidden_msrs=frozenset({0x3B, 0x10A}),
        hidden_caps=frozenset({126}),
        payloads=((0xA0, b"\x00\xff\x10\xab"), (0x46, b"")),
        tsc_khz=(2500000,),
        msr_rejected=((0x176, 0x3), (0x10, 0x4)),
        pids=(41, 42),
        config_errors=("VMSTATE_GUARD_HIDE_MSRS zz",),
        truncated=True,
    )
    assert read_log(log).msr_values(0x174) == (0x2, 0x1)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("start pid=1\nset-msr 0x174\n", 2),
        ("set nr=0xa0 size=4 fd=3 ret=0 00ff\n", 1),
        ("start pid=1\n\n", 2),
        ("get-msr 0x174 0x1 fd=3\n", 1),
        ("set-msrs-ret 1\n", 1),
    ],
    ids=["short-set-msr", "payload-size", "empty-line", "unknown-kind", "no-fd"],
)
def test_read_log_rejects_malformed_lines(tmp_path: Path, text: str, line: int) -> None:
    log = tmp_path / "kvm.log"
    log.write_text(text)
    with pytest.raises(InputError, match=rf"^{log}:{line}: malformed KVM interposer log line"):
        read_log(log)


def test_read_log_of_a_missing_file_says_the_interposer_did_not_load(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="was the interposer loaded"):
        read_log(tmp_path / "absent.log")


def test_bad_hide_entries_are_reported_and_the_rest_applies(library: Path, tmp_path: Path) -> None:
    # The parse runs when the library loads, in any program: no KVM needed.
    log = tmp_path / "kvm.log"
    env = {
        **os.environ,
        **interposer_env(library, Hide(), log),
        "VMSTATE_GUARD_HIDE_MSRS": " 0x3b, zz,0x1g,,0x100000000, 010 ,0x",
        "VMSTATE_GUARD_HIDE_CAPS": "126,-1,2147483648,7\tx",
    }
    result = subprocess.run(["true"], env=env, capture_output=True, text=True, check=True)
    parsed = read_log(log)
    assert parsed.config_errors == (
        "VMSTATE_GUARD_HIDE_MSRS zz",
        "VMSTATE_GUARD_HIDE_MSRS 0x1g",
        "VMSTATE_GUARD_HIDE_MSRS 0x100000000",
        "VMSTATE_GUARD_HIDE_MSRS 0x",
        "VMSTATE_GUARD_HIDE_CAPS -1",
        "VMSTATE_GUARD_HIDE_CAPS 2147483648",
        "VMSTATE_GUARD_HIDE_CAPS 7?x",
    )
    # "010" is decimal ten, never octal.
    assert f"start pid={parsed.pids[0]} hide-msrs=0x3b,0xa hide-caps=126" in log.read_text().splitlines()
    assert result.stderr.splitlines()[0] == "vmstate-guard kvm interposer: ignoring VMSTATE_GUARD_HIDE_MSRS zz"
    assert len(result.stderr.splitlines()) == 7


def test_log_stops_at_its_cap(library: Path, probe: Path, tmp_path: Path) -> None:
    # Each call logs a 32 KiB line; 2,100 of them pass the 64 MiB cap.
    log = tmp_path / "kvm.log"
    env = {**os.environ, **interposer_env(library, Hide(), log)}
    result = subprocess.run([str(probe), "flood", "2100"], env=env, capture_output=True, text=True, check=True)
    assert result.stdout == "flood -1 25\n"
    lines = log.read_bytes().split(b"\n")
    assert lines[-2:] == [b"truncated", b""]
    assert log.stat().st_size <= (64 << 20) + len(b"truncated\n")
    # Each logged call was an _IOW KVM request on /dev/null, which refused it.
    assert all(line.startswith(b"set nr=0xff size=16383 fd=") and b" ret=-25 " in line for line in lines[1:-2])
    assert len(lines) - 3 < 2100
    assert read_log(log).truncated


def test_a_failing_log_write_keeps_the_callers_errno(library: Path, probe: Path) -> None:
    # Every write to /dev/full fails with ENOSPC; the caller must still see
    # the ENOTTY (25) of its own ioctl, as QEMU reads errno after each call.
    env = {**os.environ, **interposer_env(library, Hide(), Path("/dev/full"))}
    result = subprocess.run([str(probe), "flood", "1"], env=env, capture_output=True, text=True, check=True)
    assert result.stdout == "flood -1 25\n"


def test_interposer_env_appends_to_ld_preload(tmp_path: Path) -> None:
    library = tmp_path / "kvm_interposer.so"
    log = tmp_path / "kvm.log"
    hide = Hide(msrs=(0x3B, 0x10A), caps=(126,))
    assert interposer_env(library, hide, log, base={"LD_PRELOAD": "/lib/other.so"}) == {
        "LD_PRELOAD": f"/lib/other.so:{library}",
        "VMSTATE_GUARD_HIDE_MSRS": "0x3b,0x10a",
        "VMSTATE_GUARD_HIDE_CAPS": "126",
        "VMSTATE_GUARD_KVM_LOG": str(log),
    }
    # Empty lists are still set, so that values inherited from the caller do not apply.
    assert interposer_env(library, Hide(), log, base={}) == {
        "LD_PRELOAD": str(library),
        "VMSTATE_GUARD_HIDE_MSRS": "",
        "VMSTATE_GUARD_HIDE_CAPS": "",
        "VMSTATE_GUARD_KVM_LOG": str(log),
    }
    with pytest.raises(InputError, match="must not contain"):
        interposer_env(tmp_path / "a b.so", hide, log, base={})


def test_hide_rejects_numbers_out_of_range() -> None:
    with pytest.raises(ValueError, match="MSR"):
        Hide(msrs=(1 << 32,))
    with pytest.raises(ValueError, match="capability"):
        Hide(caps=(-1,))
