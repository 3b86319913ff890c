"""The capability fixed point: probes reach a key whatever the order its functions come in."""

from __future__ import annotations

from analyzer.capabilities import Capabilities, Probe
from analyzer.facts.extract import extract_file
from analyzer.profile import load_profile

PATH = "target/i386/kvm/kvm.c"

# Each function reads what a later one sets, so every step of the chain
# is found one round after the one it depends on.
SOURCE = b"""
static bool has_c;
static bool has_b;
static bool has_a;
static bool has_x;
static bool has_y;
static bool has_follow;
static bool has_late;
static bool has_sw_tlb;

static void set_c(KVMState *s)
{
    has_c = has_b;
}

static bool get_a(void)
{
    return has_a;
}

static void set_b(KVMState *s)
{
    has_b = get_a();
}

static void set_a(KVMState *s)
{
    has_a = kvm_check_extension(s, KVM_CAP_FOO);
}

static int reuse(KVMState *s)
{
    int r;

    r = later_probe();
    has_x = r;
    r = 0;
    has_y = r;
    return 0;
}

static int later_probe(void)
{
    return kvm_check_extension(kvm_state, KVM_CAP_BAR);
}

static void follow(void)
{
    int v;

    if (has_late) {
        v = 1;
        has_follow = true;
    }
}

static void set_late(KVMState *s)
{
    has_late = kvm_check_extension(s, KVM_CAP_LATE);
}

static int tlb_init(KVMState *s)
{
    int ret;

    if (!kvm_check_extension(s, KVM_CAP_SW_TLB)) {
        return 0;
    }
    ret = 1;
    has_sw_tlb = true;
    return ret;
}
"""


def _line(text: str) -> int:
    """The line of SOURCE that holds `text`."""
    (line,) = [n for n, source_line in enumerate(SOURCE.decode().splitlines(), 1) if text in source_line]
    return line


def _solve() -> Capabilities:
    profile = load_profile("i386")
    return Capabilities(extract_file(PATH, SOURCE, profile, "kvm").functions, profile)


def test_a_probe_reaches_back_through_functions_defined_before_it() -> None:
    # has_c <- has_b <- get_a() <- has_a <- KVM_CAP_FOO, each link one round later.
    probes = _solve().probes
    foo = frozenset({Probe("KVM_CAP_FOO", "kvm-cap", PATH, _line("has_a = kvm_check_extension"), "set_a")})
    for key in (f"var:{PATH}:has_a", "call:get_a", f"var:{PATH}:has_b", f"var:{PATH}:has_c"):
        assert probes.get(key) == foo, key


def test_a_local_is_read_as_last_assigned_above() -> None:
    # `r = later_probe()` learns its probe in the second round; `has_x = r` below
    # it must be evaluated again, `has_y = r` reads the `r = 0` in between.
    capabilities = _solve()
    # A return's probe is placed at its function, where evidence can point.
    bar = frozenset({Probe("KVM_CAP_BAR", "kvm-cap", PATH, _line("static int later_probe"), "later_probe")})
    r = f"local:{PATH}:reuse:r"
    assert capabilities._local_values[r] == {_line("r = later_probe()"): bar, _line("r = 0;"): frozenset()}
    assert capabilities.probes.get(f"var:{PATH}:has_x") == bar
    assert f"var:{PATH}:has_y" not in capabilities.probes


def test_a_guard_learns_its_probe_after_what_it_guards() -> None:
    # `if (has_late)` decides has_follow once has_late is known to be a
    # capability; the local v under it only counts probes made in the condition.
    capabilities = _solve()
    late = frozenset({Probe("KVM_CAP_LATE", "kvm-cap", PATH, _line("has_late = kvm_check_extension"), "set_late")})
    assert capabilities.probes.get(f"var:{PATH}:has_follow") == late
    v = f"local:{PATH}:follow:v"
    assert v not in capabilities.probes
    assert capabilities._local_values[v] == {_line("v = 1;"): frozenset()}


def test_an_early_return_on_a_probe_decides_what_outlives_the_function() -> None:
    capabilities = _solve()
    sw_tlb = frozenset({Probe("KVM_CAP_SW_TLB", "kvm-cap", PATH, _line("if (!kvm_check_extension"), "tlb_init")})
    assert capabilities.probes.get(f"var:{PATH}:has_sw_tlb") == sw_tlb
    # `ret` is a local, and so is what the function returns: no capability.
    assert f"local:{PATH}:tlb_init:ret" not in capabilities.probes
    assert "call:tlb_init" not in capabilities.probes


# The KVM side reads a global that VMState code may write; the VMState code
# also reads the KVM side's probe through an accessor.
KVM_SIDE = b"""
bool kvm_flag;
static bool has_thing;

bool kvm_has_thing(void)
{
    return has_thing;
}

int kvm_arch_init(KVMState *s)
{
    has_thing = kvm_check_extension(s, KVM_CAP_THING);
    if (kvm_flag) {
        has_thing = 0;
    }
    return 0;
}
"""
VMSTATE_READING = b"""
static int thing_post_load(void *opaque, int version_id)
{
    bool ok = kvm_has_thing();
    return ok ? 0 : -EINVAL;
}
"""
VMSTATE_WRITING = (
    VMSTATE_READING
    + b"""
static int flag_post_load(void *opaque, int version_id)
{
    kvm_flag = kvm_check_extension(kvm_state, KVM_CAP_OTHER);
    return 0;
}
"""
)


def test_a_solution_extended_by_code_it_does_not_read_is_the_solution_of_both() -> None:
    from analyzer.capabilities import keys_read

    profile = load_profile("i386")
    kvm = extract_file(PATH, KVM_SIDE, profile, "kvm").functions
    # Read as KVM code, which keeps every function (as VMState code, callbacks only).
    vmstate = extract_file("target/i386/machine.c", VMSTATE_READING, profile, "kvm").functions
    base = Capabilities(kvm, profile)
    extended = base.extended(vmstate, (), keys_read(kvm))
    whole = Capabilities([*vmstate, *kvm], profile)
    assert extended is not None
    assert extended.probes == whole.probes and extended._local_values == whole._local_values
    assert "local:target/i386/machine.c:thing_post_load:ok" in extended._local_values  # it did solve the new code
    # Code that writes what the solved code reads (kvm_flag) would change that
    # solution: no extension, the caller solves both together.
    writing = extract_file("target/i386/machine.c", VMSTATE_WRITING, profile, "kvm").functions
    assert "var:kvm_flag" in keys_read(kvm)
    assert base.extended(writing, (), keys_read(kvm)) is None
