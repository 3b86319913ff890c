"""One result per subsection, from what the destinations handed to KVM."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the reports import this module, and need none of the machinery
    from .experiment import Destination, Observation
    from .plan import Plan

CONFIRMED = "confirmed"  # the older-kernel destination completed and dropped the value; the full one kept it
NOT_REPRODUCED = "not-reproduced"  # the older-kernel destination handed the value to KVM anyway
REFUSED = "refused"  # the older-kernel destination failed the migration: the state is checked
NOT_ATTEMPTED = "not-attempted"  # nothing to run, or the run could not show anything; `reason` says why
PATCH_VERIFIED = "patch-verified"  # patched: the older destination fails (or warns), the full one still restores
PATCH_FAILED = "patch-failed"  # patched, but not as the patch promises; `reason` says what was seen
RESULTS = (CONFIRMED, NOT_REPRODUCED, REFUSED, NOT_ATTEMPTED, PATCH_VERIFIED, PATCH_FAILED)


@dataclass(frozen=True)
class MsrSeen:
    name: str  # MSR_TSC_ADJUST
    index: int
    written: int | None  # what the guest left in it; None when every write faulted
    full: tuple[int, ...]  # values the real-host destination handed to KVM for it
    older: tuple[int, ...]  # and the older-kernel one


@dataclass(frozen=True)
class Proof:
    subsection: str
    verdict: str  # what the analysis said
    result: str
    reason: str  # one sentence a maintainer can check
    hidden: tuple[str, ...] = ()
    msrs: tuple[MsrSeen, ...] = ()
    in_stream: bool = False
    older_said: str = ""  # the older-kernel destination's stderr, when it matters
    patch: str | None = None  # the patch file, for patch results


def not_attempted(plan: Plan, why: str, patch: str | None = None) -> Proof:
    return Proof(plan.subsection, plan.report.verdict, NOT_ATTEMPTED, why, plan.hidden, patch=patch)


def _seen(plan: Plan, seen: Observation, older: Destination) -> tuple[MsrSeen, ...]:
    return tuple(
        MsrSeen(
            target.name,
            target.index,
            seen.final_value(target.index),
            seen.full.log.msr_values(target.index),
            older.log.msr_values(target.index),
        )
        for target in plan.targets
    )


def _preconditions(plan: Plan, seen: Observation, msrs: tuple[MsrSeen, ...], older: Destination) -> str | None:
    """Why this run cannot show anything about the plan, or None when it can."""
    unwritten = [m for m in msrs if m.written is None]
    if unwritten:
        names = ", ".join(f"{m.name} ({m.index:#x})" for m in unwritten)
        return f"the guest CPU refused every wrmsr to {names} (#GP), so no guest state was set"
    if plan.subsection not in seen.stream:
        return "needed() stayed false: the guest wrote the MSRs, but the source did not send the subsection"
    if not seen.full.completed:
        return f"the migration to the real host failed too: {seen.full.said}"
    missing = [m for m in msrs if m.written not in m.full]
    if missing:
        names = ", ".join(f"{m.name}={m.written:#x}" for m in missing if m.written is not None)
        return f"even the destination on the real host did not hand {names} to KVM"
    fired = set(older.log.hidden_msrs) | set(older.log.hidden_caps)
    if older.completed and not fired & (set(plan.hide.msrs) | set(plan.hide.caps)):
        return f"the older-kernel destination never asked for {', '.join(plan.hidden)}, so hiding it changed nothing"
    return None


def classify(plan: Plan, seen: Observation) -> Proof:
    """The result of an unpatched run."""
    older = seen.older[plan.subsection]
    msrs = _seen(plan, seen, older)
    base = Proof(
        plan.subsection, plan.report.verdict, NOT_ATTEMPTED, "", plan.hidden, msrs, plan.subsection in seen.stream
    )
    why = _preconditions(plan, seen, msrs, older)
    if why is not None:
        return _with(base, NOT_ATTEMPTED, why)
    values = ", ".join(f"{m.name}={m.written:#x}" for m in msrs if m.written is not None)
    hidden = ", ".join(plan.hidden)
    if not older.completed:
        return _with(
            base, REFUSED, f"with {hidden} hidden the destination failed the migration: {older.said}", older.said
        )
    dropped = [m for m in msrs if m.written not in m.older]
    if dropped:
        return _with(
            base,
            CONFIRMED,
            f"with {hidden} hidden the migration completed and {values} never reached KVM, "
            "while the destination on the real host handed it over",
        )
    why = f"with {hidden} hidden the destination still handed {values} to KVM"
    if plan.report.verdict != "unchecked":
        why += f", as the analysis predicts for a subsection it calls {plan.report.verdict}"
    return _with(base, NOT_REPRODUCED, why)


def classify_patched(plan: Plan, seen: Observation, message: str, mode: str, patch: str) -> Proof:
    """The result of a run on the tree with the patch applied."""
    older = seen.older[plan.subsection]
    msrs = _seen(plan, seen, older)
    base = Proof(
        plan.subsection,
        plan.report.verdict,
        NOT_ATTEMPTED,
        "",
        plan.hidden,
        msrs,
        plan.subsection in seen.stream,
        patch=patch,
    )
    why = _preconditions(plan, seen, msrs, older)
    if why is not None:
        return _with(base, NOT_ATTEMPTED, why)
    hidden = ", ".join(plan.hidden)
    shown = message in older.said
    if mode == "fail" and not older.completed and shown:
        return _with(base, PATCH_VERIFIED, f"with {hidden} hidden the destination fails: {message}", older.said)
    if mode == "warn" and older.completed and shown:
        return _with(base, PATCH_VERIFIED, f"with {hidden} hidden the destination warns: {message}", older.said)
    if older.completed and not shown:
        what = "completed without the patch's message"
    elif older.completed:
        what = "completed (it printed the message, but --mode fail should stop it)"
    else:
        what = f"failed without the patch's message: {older.said}"
    return _with(base, PATCH_FAILED, f"with {hidden} hidden the patched destination {what}", older.said)


def _with(base: Proof, result: str, reason: str, said: str = "") -> Proof:
    return replace(base, result=result, reason=reason, older_said=said)
