"""`if (!x) { continue; }` guards the rest of a loop body, like an early return."""

from __future__ import annotations

from analyzer.facts.extract import extract_file
from analyzer.profile import load_profile

SOURCE = b"""
static int put(CPUState *cs)
{
    for (i = 0; i < n; i++) {
        if (!cfgs[i].supported) {
            continue;
        }
        kvm_set_one_reg(cs, cfgs[i].id, &reg);
    }
    kvm_set_one_reg(cs, ID, &other);
    return 0;
}
"""


def test_continue_guards_the_rest_of_the_loop_body() -> None:
    (function,) = extract_file("k.c", SOURCE, load_profile("i386"), "kvm").functions
    inside, after = (c for c in function.calls if c.callee == "kvm_set_one_reg")
    assert [(g.kind, g.holds, g.condition.text) for g in inside.guards] == [
        ("early-return", False, "!cfgs[i].supported")
    ]
    assert after.guards == ()
