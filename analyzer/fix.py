"""Patch proposals: one `git format-patch`-style patch per unchecked subsection.

Each patch gives the subsection a post_load (or extends the one it has) that
fails the migration (`--mode fail`) or warns (`--mode warn`) when KVM is in
use and the host lacks the capability, through an accessor exported from the
KVM code: an existing one (`kvm_has_exception_payload()`) or a new one for a
file-static flag, declared in the target's KVM header. The check sits inside
`#ifdef CONFIG_KVM`, so builds without KVM neither compile nor link it.

Patches are computed in order on an in-memory copy of the files, so a series
applies on top of itself; the analysed tree is never written.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from dataclasses import dataclass, replace

from tree_sitter import Node

from . import __version__
from .audit import AuditResult
from .errors import InputError
from .findings import Finding
from .patch_site import PatchSite, propose
from .preprocess import mask
from .syntax import parse
from .tree import TreeReader
from .verdicts import SubsectionReport

MODES = ("fail", "warn")
_ERROR_REPORT = "qemu/error-report.h"
_HAS_DECLARATION = re.compile(r"^bool kvm_has_\w+\(void\);$")


@dataclass(frozen=True)
class Patch:
    subsection: str
    subject: str
    body: str
    diffs: tuple[tuple[str, str, str], ...]  # (path, before, after)


@dataclass(frozen=True)
class Skipped:
    subsection: str
    reason: str


def _declaration_named(root: Node, name: str) -> Node | None:
    for node in root.named_children:
        if node.type in ("declaration", "function_definition"):
            for declarator in node.children_by_field_name("declarator"):
                current: Node | None = declarator
                while current is not None and current.type not in ("identifier",):
                    current = current.child_by_field_name("declarator")
                if current is not None and current.text == name.encode():
                    return node
    return None


def _tree(text: str) -> Node:
    return parse(mask(text.encode()).text).root_node


def _insert(text: str, line_index: int, block: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join([*lines[:line_index], block, *lines[line_index:]])


def _indent_of(text: str, line_index: int) -> str:
    line = text.splitlines()[line_index]
    return line[: len(line) - len(line.lstrip())]


class _Series:
    """File contents as the patches so far leave them."""

    def __init__(self, result: AuditResult, reader: TreeReader) -> None:
        self.files = {f.path: f.data.decode("utf-8", "surrogateescape") for f in result.analysis.tree.files}
        self.reader = reader
        self.accessors: set[str] = set()  # added by an earlier patch of the series

    def text(self, path: str) -> str:
        if path not in self.files:
            data = self.reader.read(path)
            if data is None:
                raise InputError(f"{path}: not in this tree")
            self.files[path] = data.decode("utf-8", "surrogateescape")
        return self.files[path]


def _c_string_lines(message: str, first_prefix: str, next_prefix: str, suffix: str, width: int = 80) -> list[str]:
    """`message` as adjacent C string literals, each line within `width` (QEMU's checkpatch limit)."""
    room = width - max(len(first_prefix), len(next_prefix)) - len(suffix) - 2
    chunks: list[str] = []
    current = ""
    for word in message.split(" "):
        piece = word if not current else " " + word
        if current and len(current) + len(piece) > room:
            chunks.append(current + " ")
            current = word
        else:
            current += piece
    chunks.append(current)
    lines = []
    for index, chunk in enumerate(chunks):
        prefix = first_prefix if index == 0 else next_prefix
        end = suffix if index == len(chunks) - 1 else ""
        lines.append(f'{prefix}"{chunk}"{end}')
    return lines


def _check_block(report: SubsectionReport, site: PatchSite, mode: str, indent: str, guard: str) -> str:
    name = report.description.name or report.description.symbol
    calls = [f"!{a.name}()" for a in site.accessors]
    condition = calls[0] if len(calls) == 1 else "(" + " || ".join(calls) + ")"
    probes = ", ".join(sorted({p.name for p in report.required})) or "a capability"
    what = "cannot restore" if mode == "fail" else "drops"
    report_call = "error_report(" if mode == "fail" else "warn_report("
    inner = indent + "    "
    message = f"{name}: host kernel lacks {probes}; KVM {what} the migrated state"
    opening = [f"{indent}if (kvm_enabled() && {condition}) {{"]
    if len(opening[0]) > 80:
        opening = [f"{indent}if (kvm_enabled() &&", f"{indent}    {condition}) {{"]
    if len(opening[-1]) > 80:
        opening = [f"{indent}if (kvm_enabled() &&", f"{indent}    ({calls[0]} ||"]
        opening += [f"{indent}     {call} ||" for call in calls[1:-1]] + [f"{indent}     {calls[-1]})) {{"]
    lines = [
        f"#ifdef {guard}",
        *opening,
        *_c_string_lines(message, inner + report_call, inner + " " * len(report_call), ");"),
    ]
    if mode == "fail":
        lines.append(f"{inner}return -EINVAL;")
    lines += [f"{indent}}}", "#endif"]
    return "\n".join(lines) + "\n"


def _machine_edit(text: str, report: SubsectionReport, site: PatchSite, mode: str, guard: str) -> str:
    root = _tree(text)
    description = report.description
    if site.extends_existing:
        function = _declaration_named(root, site.post_load)
        body = function.child_by_field_name("body") if function is not None else None
        if body is None:
            raise InputError(f"{description.path}: post_load {site.post_load} not found")
        statements = [c for c in body.named_children if c.type not in ("comment", "declaration")]
        declarations = [c for c in body.named_children if c.type == "declaration"]
        first = statements[0] if statements else None
        if first is not None and (not declarations or first.start_byte > declarations[-1].start_byte):
            line_index = first.start_point[0]
            indent = _indent_of(text, line_index)
        else:
            line_index = (declarations[-1].end_point[0] + 1) if declarations else body.start_point[0] + 1
            indent = "    "
        return _insert(text, line_index, _check_block(report, site, mode, indent, guard) + "\n")
    declaration = _declaration_named(root, description.symbol)
    if declaration is None:
        raise InputError(f"{description.path}: description {description.symbol} not found")
    # `.post_load = name,` after `.needed = ...,` (or `.name` when there is no needed).
    initializer = text.splitlines()
    start, end = declaration.start_point[0], declaration.end_point[0]
    anchor = None
    for key in (".needed", ".minimum_version_id", ".version_id", ".name"):
        anchor = next((i for i in range(start, end + 1) if initializer[i].lstrip().startswith(key)), None)
        if anchor is not None:
            break
    if anchor is None:
        raise InputError(f"{description.path}: cannot place .post_load in {description.symbol}")
    text = _insert(text, anchor + 1, f"{_indent_of(text, anchor)}.post_load = {site.post_load},\n")
    new_function = (
        f"static int {site.post_load}(void *opaque, int version_id)\n{{\n"
        + _check_block(report, site, mode, "    ", guard)
        + "    return 0;\n}\n\n"
    )
    needed = _declaration_named(root, description.needed) if description.needed else None
    if needed is not None and needed.end_point[0] < start:
        # Right after needed(), so the two callbacks read together.
        return _insert(text, needed.end_point[0] + 1, "\n" + new_function.rstrip("\n") + "\n")
    return _insert(text, start, new_function)


def _with_include(text: str, header: str) -> str:
    """`text` including `header` (error_report() and warn_report() need
    qemu/error-report.h, which target/ppc/machine.c does not include):
    after qemu/osdep.h, which QEMU requires first."""
    lines = text.splitlines()
    if any(line.strip() == f'#include "{header}"' for line in lines):
        return text
    osdep = next((i for i, line in enumerate(lines) if line.strip() == '#include "qemu/osdep.h"'), None)
    return _insert(text, (osdep + 1) if osdep is not None else 0, f'#include "{header}"\n')


def _kvm_edit(text: str, flag: str, accessor: str) -> str:
    root = _tree(text)
    declaration = _declaration_named(root, flag)
    if declaration is None:
        raise InputError(f"flag {flag} not declared at file scope")
    after = [n for n in root.named_children if n.type == "function_definition" and n.start_byte > declaration.end_byte]
    if after:
        # Above the comment that documents the next function, not between them.
        first = after[0]
        while first.prev_sibling is not None and first.prev_sibling.type == "comment":
            first = first.prev_sibling
        line_index = first.start_point[0]
    else:
        line_index = len(text.splitlines())
    return _insert(text, line_index, f"bool {accessor}(void)\n{{\n    return {flag};\n}}\n\n")


def _header_edit(text: str, accessor: str) -> str:
    lines = text.splitlines()
    anchors = [i for i, line in enumerate(lines) if _HAS_DECLARATION.match(line)]
    if anchors:
        return _insert(text, anchors[-1] + 1, f"bool {accessor}(void);\n")
    endifs = [i for i, line in enumerate(lines) if line.startswith("#endif")]
    return _insert(text, endifs[-1] if endifs else len(lines), f"bool {accessor}(void);\n\n")


def _message(report: SubsectionReport, site: PatchSite, mode: str) -> tuple[str, str]:
    d = report.description
    name = d.name or d.symbol
    probes = ", ".join(sorted({p.name for p in report.required}))
    subject = f"{'fail' if mode == 'fail' else 'warn on'} migration of {name} without {probes}"
    guarded = [c for c in report.consumers if c.field in report.guarded_fields and c.capability_guards]
    first = guarded[0]
    flags = ", ".join(sorted({g for c in guarded for g in c.capability_guards}))
    probe = report.required[0]
    paragraphs = [
        f"The destination hands {', '.join(report.guarded_fields)} to KVM in {first.handoff.function}() only if "
        f"{flags}, which {probe.function}() sets from the host ({probe.name}, {probe.kind}). When the destination "
        f"runs the same QEMU on a kernel without it, the state carried by the {name} subsection is dropped "
        f"silently and the migration reports success.",
    ]
    new = [a.name for a in site.accessors if not a.exists]
    action = "fails the migration" if mode == "fail" else "warns"
    what = f"Add a post_load to {d.symbol}" if not site.extends_existing else f"Extend {site.post_load}()"
    sentence = f"{what} that {action} when KVM is in use and the capability is missing"
    if new:
        sentence += f", through a new accessor {', '.join(n + '()' for n in new)}"
    paragraphs.append(sentence + ".")
    for mitigation in report.compat:
        if mitigation.machines:
            machines = ", ".join(m.name for m in mitigation.machines)
            arrays = ", ".join(a.symbol for a in mitigation.arrays)
            paragraphs.append(
                f"Machine types {machines} already keep the subsection off through the {mitigation.property.name} "
                f"compat property ({arrays}); users of older kernels who stay on them are not affected."
            )
    paragraphs.append("Found by vmstate-guard (VG001).")
    body = "\n\n".join(textwrap.fill(p, width=72, break_on_hyphens=False) for p in paragraphs)
    return subject, body


def propose_patches(
    result: AuditResult, reader: TreeReader, mode: str, only: str | None = None
) -> tuple[list[Patch], list[Skipped]]:
    """Patches for the reported VG001 findings (only the one named `only` if given)."""
    profile = result.analysis.profile
    series = _Series(result, reader)
    headers = [h for h in profile.kvm_headers if reader.read(h) is not None]
    # A device's subsections (ppc's spapr_cpu/vpa in hw/ppc/spapr_cpu_core.c) are
    # patched like the CPU's, in the device's description file.
    units = {analysis.profile.label: analysis for analysis in result.analyses}
    reports = {
        (analysis.profile.label, r.description.path, r.description.name or r.description.symbol): r
        for analysis in result.analyses
        for r in analysis.subsections
    }
    patches: list[Patch] = []
    skipped: list[Skipped] = []
    findings: list[Finding] = [f for f in result.findings if f.rule == "VG001"]
    if only is not None:
        findings = [f for f in findings if f.subsection == only]
    for finding in findings:
        report = reports[(finding.unit, finding.location.path, finding.subsection)]
        site = propose(units[finding.unit], report)
        site = replace(
            site, accessors=tuple(replace(a, exists=a.exists or a.name in series.accessors) for a in site.accessors)
        )
        missing = [a for a in site.accessors if not a.exists]
        unexportable = [a.flag for a in missing if not a.exportable]
        if not site.accessors or unexportable:
            why = f"the capability is held by {', '.join(unexportable) or 'no flag'}, which no accessor can return"
            skipped.append(Skipped(finding.subsection, why))
            continue
        if any(a.location is None for a in missing) or (missing and not headers):
            raise InputError(f"{finding.subsection}: no place to define {', '.join(a.name for a in missing)}()")
        machine = report.description.path
        touched = [machine, *(a.location.path for a in missing if a.location), *(headers[:1] if missing else [])]
        before = {path: series.text(path) for path in dict.fromkeys(touched)}
        edited = _machine_edit(series.text(machine), report, site, mode, profile.build_guard)
        edited = _with_include(edited, _ERROR_REPORT)
        is_device = finding.unit != profile.label
        if is_device and headers:
            edited = _with_include(edited, headers[0])  # where the target's accessors are declared
        series.files[machine] = edited
        for accessor in missing:
            assert accessor.location is not None
            kvm_path = accessor.location.path
            series.files[kvm_path] = _kvm_edit(series.text(kvm_path), accessor.flag, accessor.name)
            series.files[headers[0]] = _header_edit(series.text(headers[0]), accessor.name)
            series.accessors.add(accessor.name)
        subject, body = _message(report, site, mode)
        diffs = tuple((path, text, series.files[path]) for path, text in before.items())
        # A device file's patch is named after it, as QEMU's own commits are (hw/ppc/spapr_cpu_core: ...).
        prefix = machine.removesuffix(".c") if is_device else profile.subject_prefix
        patches.append(Patch(finding.subsection, f"{prefix}: {subject}", body, diffs))
    return patches, skipped


def _diffstat(diffs: tuple[tuple[str, str, str], ...]) -> list[str]:
    rows = []
    total_add = total_del = 0
    width = max(len(p) for p, _, _ in diffs)
    for path, before, after in diffs:
        lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
        added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
        deleted = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
        total_add += added
        total_del += deleted
        rows.append(f" {path.ljust(width)} | {added + deleted:3d} {'+' * added}{'-' * deleted}")
    files = len(diffs)
    summary = (
        f" {files} file{'s' if files != 1 else ''} changed, {total_add} insertion{'s' if total_add != 1 else ''}(+)"
    )
    if total_del:
        summary += f", {total_del} deletion{'s' if total_del != 1 else ''}(-)"
    return [*rows, summary]


def render_patch(patch: Patch, number: int, total: int, signoff: str | None) -> str:
    """The patch as `git format-patch` writes it; no Signed-off-by unless one is given."""
    author = signoff or "vmstate-guard <vmstate-guard@invalid>"
    tag = f"[PATCH {number}/{total}]" if total > 1 else "[PATCH]"
    lines = [
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001",
        f"From: {author}",
        f"Subject: {tag} {patch.subject}",
        "",
        patch.body,
    ]
    if signoff:
        lines += ["", f"Signed-off-by: {signoff}"]
    lines += ["---", *_diffstat(patch.diffs), ""]
    for path, before, after in patch.diffs:
        lines.append(f"diff --git a/{path} b/{path}")
        lines.extend(
            difflib.unified_diff(
                before.splitlines(), after.splitlines(), fromfile=f"a/{path}", tofile=f"b/{path}", lineterm=""
            )
        )
    lines += ["-- ", f"vmstate-guard {__version__}", ""]
    return "\n".join(lines) + "\n"


def file_name(patch: Patch, number: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", patch.subject).strip("-")[:52].rstrip("-")
    return f"{number:04d}-{slug}.patch"
