"""Command line: `vmstate-guard audit|graph|explain`, exit 0 clean / 1 findings / 2 bad input."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import InputError
from .output import refuse_inside, write_output, write_stdout
from .profile import available_targets
from .reports import FINDING_FORMATS, GRAPH_FORMATS, PROOF_FORMATS, printable

if TYPE_CHECKING:
    from .cache import FactsCache
    from .tree import TreeReader

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERNAL = 0, 1, 2, 3

_DESCRIPTION = """\
Find QEMU VMState subsections whose state KVM can drop silently on a
destination with an older kernel: state that reaches KVM only behind a
host-capability flag that no post_load verifies. Also checks conventions
the VMState loader relies on, and state KVM holds that migration never
sends (vmstate-guard --list-rules lists the rules).

exit status: 0 no findings, 1 findings, 2 usage or input error, 3 internal error
"""

_CHECK_EPILOG = """\
examples:
  vmstate-guard check . --base origin/master                 the working tree against a branch
  vmstate-guard check . --base origin/master --head HEAD --format sarif -o vmstate-guard.sarif
  vmstate-guard check qemu-10.0 --base-tree qemu-7.2         two unpacked releases, no git

Findings are matched by fingerprint (rule, subsection and capability names,
never line numbers), so code that only moved is not reported. Exit status is
1 only when head has a finding the base does not.
"""

_FIX_EPILOG = """\
examples:
  vmstate-guard fix ~/src/qemu -o patches/                        one patch per finding, as a series
  vmstate-guard fix ~/src/qemu -o patches/ --subsection cpu/msr_smi_count --mode warn \\
      --signoff "Jane Doe <jane@example.org>"
  git -C ~/src/qemu am ~+/patches/*.patch

Whether a lost register is worth a failed migration depends on what the
guest loses: --mode fail refuses the migration, --mode warn reports and goes
on. Without --signoff the patches carry no Signed-off-by.
"""

_PROVE_EPILOG = """\
examples:
  vmstate-guard prove ~/src/qemu                           every VG001 finding of the x86 CPU
  vmstate-guard prove ~/src/qemu --subsection cpu/msr_tsc_adjust --subsection cpu/steal_time_msr
  vmstate-guard fix ~/src/qemu -o patches/ && vmstate-guard prove ~/src/qemu --patches patches/
  vmstate-guard prove ~/src/qemu --qemu ~/src/qemu/build/qemu-system-x86_64 --format html -o proof.html

A guest whose firmware writes each finding's MSRs migrates, through a
stream file, to a destination on this host and to one whose KVM looks older
(an LD_PRELOAD ioctl interposer hides the finding's probe). Results:
confirmed (the older destination completed and the value never reached KVM,
while the full one delivered it), not-reproduced, refused (the migration
failed: the state is checked), not-attempted (with the reason), and with
--patches patch-verified or patch-failed. Needs /dev/kvm on an x86_64 host;
other targets need a host of their own architecture. Without --qemu the
tree's QEMU is built once (KVM only, about 10 minutes on 2 cores) in
~/.cache/vmstate-guard/prove (or $VMSTATE_GUARD_PROVE_CACHE), never in the
tree. Exit status 1 when a loss is confirmed that no verified patch covers,
or a patch did not hold.
"""

_AUDIT_EPILOG = """\
examples:
  vmstate-guard audit ~/src/qemu                 warnings, then a summary per verdict
  vmstate-guard audit ~/src/qemu --format json -o audit.json
  vmstate-guard audit ~/src/qemu --format sarif -o vmstate-guard.sarif
  vmstate-guard audit ~/src/qemu --write-baseline baseline.json   then --baseline baseline.json

Each warning is `path:line:col: warning: message [VG001]`, followed by its
evidence: the needed() function, the guarded write to KVM, where the flag is
probed, and any machine-type compat property that keeps the subsection off.
Notes list regions of the tree the parser could not understand where they
touch what an analysis reads (--verbose: all of them). The last line says
what failed: `2 findings (VG001 cpu/tsc_khz, VG002 e1000/mit_state)`.
"""

_GRAPH_EPILOG = """\
examples:
  vmstate-guard graph ~/src/qemu -o graph.json                     node-link JSON (networkx)
  vmstate-guard graph ~/src/qemu -f graphml -o graph.graphml       for Gephi, yEd, Cytoscape
  vmstate-guard graph ~/src/qemu -f dot --target i386 | dot -Tsvg -o graph.svg

Nodes are keyed by (file, symbol): subsections, fields, KVM writes, flags,
probes and compat properties; edges carry the location of their evidence.
"""

_COMPLETION_EPILOG = """\
examples:
  vmstate-guard completion bash > ~/.local/share/bash-completion/completions/vmstate-guard
  source <(vmstate-guard completion zsh)                 in ~/.zshrc
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"vmstate-guard: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[_Parser]


class _ListRules(argparse.Action):
    """`--list-rules`, at the top or after a command: prints the registry and exits,
    whatever else the command would require (`audit --list-rules` has no tree)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="list the rules with id, name and summary, then exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from .rules import RULES

        try:
            write_stdout(
                "".join(
                    f"{r.id}  {r.name}  [{r.severity}, {r.confidence} confidence]\n    {r.summary}\n" for r in RULES
                )
            )
        except InputError as error:  # before main()'s handlers: parsing is not done
            parser.exit(EXIT_ERROR, f"vmstate-guard: error: {error}\n")
        parser.exit(EXIT_CLEAN)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; with `command`, that command's alone: a run parses one,
    and adding the others' options would be two thirds of the parser's cost."""
    parser = _Parser(
        prog="vmstate-guard", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"vmstate-guard {__version__}")
    parser.add_argument("--list-rules", action=_ListRules)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, add in _COMMANDS.items():
        if command in (None, name):
            add(commands)
    return parser


def _audit_command(commands: _Commands) -> None:
    audit = commands.add_parser(
        "audit",
        help="report subsections whose state can be dropped silently",
        description="Audit a QEMU source tree.",
        epilog=_AUDIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audit.add_argument("tree", type=Path, metavar="QEMU_DIR", help="top of a QEMU source tree (read only)")
    _findings_options(audit, FINDING_FORMATS)
    _common(audit)


def _check_command(commands: _Commands) -> None:
    check = commands.add_parser(
        "check",
        help="report only the findings a change introduces (pre-merge lint)",
        description="Compare two revisions of a QEMU tree and report findings that are new in head.",
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("tree", type=Path, metavar="QEMU_DIR", help="the QEMU tree (a git checkout for --base)")
    base = check.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", metavar="REV", help="git revision to compare against, read from git objects")
    base.add_argument("--base-tree", type=Path, metavar="DIR", help="an unpacked tree to compare against, without git")
    check.add_argument(
        "--head", metavar="REV", help="git revision to check (default: the files in QEMU_DIR as they are on disk)"
    )
    _findings_options(check, FINDING_FORMATS)
    _common(check)


def _graph_command(commands: _Commands) -> None:
    graph = commands.add_parser(
        "graph",
        help="export the evidence graph",
        description="Export the graph linking subsections, fields, KVM writes, flags, probes and compat properties.",
        epilog=_GRAPH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    graph.add_argument("tree", type=Path, metavar="QEMU_DIR", help="top of a QEMU source tree (read only)")
    graph.add_argument("-f", "--format", choices=GRAPH_FORMATS, default="json", help="graph format (default: json)")
    _common(graph)


def _fix_command(commands: _Commands) -> None:
    fix = commands.add_parser(
        "fix",
        help="write a patch per unchecked subsection (the tree is not modified)",
        description="Write git format-patch style patches that add the missing post_load checks.",
        epilog=_FIX_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fix.add_argument("tree", type=Path, metavar="QEMU_DIR", help="top of a QEMU source tree (read only)")
    fix.add_argument("-o", "--output", type=Path, metavar="DIR", required=True, help="directory for the .patch files")
    fix.add_argument("--subsection", metavar="NAME", help="only this subsection (e.g. cpu/msr_smi_count)")
    fix.add_argument(
        "--mode",
        choices=("fail", "warn"),
        default="fail",
        help="fail the migration when the capability is missing (default), or warn and continue",
    )
    fix.add_argument("--signoff", metavar="'NAME <EMAIL>'", help="author and Signed-off-by line of the patches")
    fix.add_argument("--config", type=Path, metavar="FILE", help="configuration (accepted findings get no patch)")
    fix.add_argument("--target", default="i386", choices=available_targets(), help="target profile (default: i386)")
    _run_options(fix)


def _prove_command(commands: _Commands) -> None:
    from .prove import DEFAULT_CPU

    prove = commands.add_parser(
        "prove",
        help="reproduce findings on real KVM migrations, and verify fix's patches",
        description="Run the x86 CPU unit's findings as QEMU migrations under KVM, to a destination whose "
        "kernel looks older, and record what reaches the kernel.",
        epilog=_PROVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prove.add_argument("tree", type=Path, metavar="QEMU_DIR", help="top of a QEMU source tree (read only)")
    prove.add_argument("--qemu", type=Path, metavar="BINARY", help="a qemu-system-x86_64 built from this tree")
    prove.add_argument(
        "--subsection",
        action="append",
        default=[],
        metavar="NAME",
        help="run this subsection, whatever its verdict (repeatable; default: every VG001 finding)",
    )
    prove.add_argument(
        "--patches", type=Path, metavar="DIR", help="a series from vmstate-guard fix to build and verify"
    )
    prove.add_argument("-f", "--format", choices=PROOF_FORMATS, default="text", help="output format (default: text)")
    prove.add_argument(
        "--cpu", default=DEFAULT_CPU, metavar="MODEL", help=f"-cpu of every guest (default: {DEFAULT_CPU})"
    )
    prove.add_argument("--timeout", type=_jobs, default=60, metavar="SECONDS", help="for each QEMU step (default: 60)")
    _output_option(prove)
    _run_options(prove)


def _explain_command(commands: _Commands) -> None:
    explain = commands.add_parser("explain", help="print a rule's documentation", description="Explain a rule.")
    explain.add_argument("rule", metavar="ID", help="rule id (VG001) or name (unchecked-capability-subsection)")


def _completion_command(commands: _Commands) -> None:
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for bash or zsh, generated from these options.",
        epilog=_COMPLETION_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete for")


# In the order --help lists them.
_COMMANDS = {
    "audit": _audit_command,
    "check": _check_command,
    "graph": _graph_command,
    "fix": _fix_command,
    "prove": _prove_command,
    "explain": _explain_command,
    "completion": _completion_command,
}


def _findings_options(command: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    command.add_argument("-f", "--format", choices=formats, default="text", help="output format (default: text)")
    command.add_argument(
        "--select",
        type=_rule_list,
        action="extend",
        default=[],
        metavar="RULES",
        help="run only these rules (comma-separated ids or names; overrides [rules] disable)",
    )
    command.add_argument(
        "--ignore", type=_rule_list, action="extend", default=[], metavar="RULES", help="do not run these rules"
    )
    command.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 even when there are findings (report-only jobs); input and internal errors still exit 2 and 3",
    )
    command.add_argument(
        "-v", "--verbose", action="store_true", help="also show notes on code no analysis uses (text, SARIF, HTML)"
    )
    command.add_argument("--list-rules", action=_ListRules)
    command.add_argument(
        "--config", type=Path, metavar="FILE", help="configuration (default: QEMU_DIR/.vmstate-guard.toml if present)"
    )
    command.add_argument("--baseline", type=Path, metavar="FILE", help="hide the findings this baseline records")
    command.add_argument(
        "--write-baseline", type=Path, metavar="FILE", help="record the findings that would be reported, then exit 0"
    )


def _rule_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


_JOBS_HELP = "worker processes that parse the tree's files (default: one per core; 1: no workers)"


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def _facts_cache(args: argparse.Namespace) -> FactsCache | None:
    from .cache import FactsCache, cache_directory  # with the facts' model and tree-sitter: not for --help

    if args.no_cache:
        return None
    cache = FactsCache(cache_directory())
    if cache.problem:
        print(f"vmstate-guard: warning: {cache.problem}", file=sys.stderr)
    return cache


def _common(command: argparse.ArgumentParser) -> None:
    _output_option(command)
    command.add_argument(
        "--target",
        action="append",
        default=[],
        choices=available_targets(),
        help="audit only this target (repeatable; default: every target the tree has)",
    )
    _run_options(command)


def _output_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of standard output")


def _run_options(command: argparse.ArgumentParser) -> None:
    """How a command that audits runs: progress, worker processes, the facts cache."""
    command.add_argument("--quiet", action="store_true", help="no progress messages on a terminal")
    command.add_argument("-j", "--jobs", type=_jobs, default=os.cpu_count() or 1, metavar="N", help=_JOBS_HELP)
    command.add_argument(
        "--no-cache",
        action="store_true",
        help="do not read or write the per-file facts cache (~/.cache/vmstate-guard, or $VMSTATE_GUARD_CACHE)",
    )


def _write(text: str, output: Path | None) -> None:
    """Write to stdout, or to `output` (see analyzer/output.py)."""
    if output is None:
        write_stdout(text)
    else:
        write_output(text, output)


class _Progress:
    """`parsing [12/642] hw/net/e1000.c` on a terminal's stderr, nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.active = enabled and sys.stderr.isatty()
        self.shown = False

    def __call__(self, path: str, index: int, total: int) -> None:
        if self.active:
            sys.stderr.write(f"\r\033[Kparsing [{index + 1}/{total}] {printable(path)}")
            sys.stderr.flush()
            self.shown = True

    def say(self, message: str) -> None:
        """A step of a long run (a QEMU build, a migration), in place of the last one."""
        if self.active:
            sys.stderr.write(f"\r\033[K{message[: shutil.get_terminal_size().columns - 1]}")
            sys.stderr.flush()
            self.shown = True

    def done(self) -> None:
        """Clear the line, so that what follows starts clean."""
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


def _progress(enabled: bool) -> _Progress:
    return _Progress(enabled)


def _warn_skipped(skipped: Sequence[tuple[str, str]]) -> None:
    for path, why in skipped:
        print(printable(f"vmstate-guard: warning: {path}: {why}; skipped"), file=sys.stderr)


def _report_findings(args: argparse.Namespace) -> int:
    from .audit import audit, audit_findings
    from .baseline import load_baseline, render_baseline
    from .config import load_config
    from .git import RevisionReader
    from .reports import renderer
    from .selection import introduced, select
    from .tree import DirectoryReader

    if args.output:  # trees read from disk; a revision comes from git's objects
        on_disk = [args.tree] if args.command == "audit" or not args.head else []
        refuse_inside(args.output, on_disk + ([args.base_tree] if args.command == "check" and args.base_tree else []))
    config = load_config(args.config, args.tree if args.tree.is_dir() else None).with_rules(args.select, args.ignore)
    progress = _progress(not args.quiet)
    head: TreeReader = DirectoryReader(args.tree)
    if args.command == "check" and args.head:
        head = RevisionReader(args.tree, args.head)
    cache = _facts_cache(args)
    result = audit(head, args.target, config, progress, cache, args.jobs)
    progress.done()
    _warn_skipped(result.skipped)
    if args.command == "check":
        base = _base_reader(args)
        if base is None:
            result = introduced(result, None)
        else:
            base_findings = audit_findings(base, args.target, config, progress, cache, args.jobs)
            result = introduced(result, base_findings, base.label)
            progress.done()
    baseline = load_baseline(args.baseline) if args.baseline else None
    if args.write_baseline:
        # Keep reasons already written in the baseline being replaced.
        previous = baseline or (load_baseline(args.write_baseline) if args.write_baseline.is_file() else None)
        recorded = select(result, config)
        _write(render_baseline(recorded.findings, previous), args.write_baseline)
        print(f"vmstate-guard: recorded {len(recorded.findings)} findings in {args.write_baseline}", file=sys.stderr)
        return EXIT_CLEAN
    result = select(result, config, baseline)
    _write(renderer(args.format, args.verbose)(result), args.output)
    return EXIT_FINDINGS if result.findings and not args.exit_zero else EXIT_CLEAN


def _base_reader(args: argparse.Namespace) -> TreeReader | None:
    """What `check` compares with; None when there is nothing yet, in a repository's
    first commit (the pre-commit hook's `--base HEAD`): everything is new."""
    from .git import RevisionReader, is_unborn
    from .tree import DirectoryReader

    if not args.base:
        return DirectoryReader(args.base_tree)
    try:
        return RevisionReader(args.tree, args.base)
    except InputError:
        # Asked only when the revision is not there: two git processes fewer for every check.
        if is_unborn(args.tree, args.base):
            return None
        raise


def _write_patches(args: argparse.Namespace) -> int:
    from .audit import audit
    from .config import load_config
    from .fix import file_name, propose_patches, render_patch
    from .selection import select
    from .tree import DirectoryReader

    reader = DirectoryReader(args.tree)
    output: Path = args.output
    refuse_inside(output, [args.tree])
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: exists and is not a directory")
    # `git am patches/*.patch` would apply an earlier series with this one.
    earlier = sorted(p.name for p in output.glob("*.patch")) if output.is_dir() else []
    if earlier:
        raise InputError(
            f"{output}: holds {len(earlier)} patch(es) already ({earlier[0]}...); "
            "remove them or choose an empty directory, so that two series do not mix"
        )
    config = load_config(args.config, args.tree)
    progress = _progress(not args.quiet)
    result = select(audit(reader, args.target, config, progress, _facts_cache(args), args.jobs), config)
    progress.done()
    _warn_skipped(result.skipped)
    if args.subsection and args.subsection not in {f.subsection for f in result.findings}:
        raise InputError(f"no unchecked subsection named {args.subsection!r} (see vmstate-guard audit {args.tree})")
    patches, skipped = propose_patches(result, reader, args.mode, args.subsection)
    if not patches and not skipped:
        print("vmstate-guard: no unchecked subsection: nothing to patch", file=sys.stderr)
    for entry in skipped:
        print(printable(f"vmstate-guard: note: no patch for {entry.subsection}: {entry.reason}"), file=sys.stderr)
    if patches:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"{output}: cannot create: {error.strerror or error}") from None
    for number, patch in enumerate(patches, start=1):
        path = output / file_name(patch, number)
        _write(render_patch(patch, number, len(patches), args.signoff), path)
        write_stdout(printable(f"{path}  ({patch.subsection})") + "\n")
    return EXIT_CLEAN


def _prove(args: argparse.Namespace) -> int:

    from .audit import audit
    from .prove.build import prove_cache_directory
    from .prove.results import CONFIRMED, PATCH_FAILED, PATCH_VERIFIED
    from .prove.run import TARGET, prove
    from .reports import proof_renderer
    from .tree import DirectoryReader

    if args.output is not None:
        refuse_inside(args.output, [args.tree])
    progress = _progress(not args.quiet)
    result = audit(DirectoryReader(args.tree), [TARGET], None, progress, _facts_cache(args), args.jobs)
    progress.done()
    _warn_skipped(result.skipped)
    try:
        run = prove(
            args.tree,
            result,
            prove_cache_directory(),
            args.subsection,
            args.qemu,
            args.patches,
            args.cpu,
            args.timeout,
            progress.say,
        )
    finally:
        progress.done()
    _write(proof_renderer(args.format)(result._replace(proof_run=run)), args.output)
    noun = "subsection" if len(run.proofs) == 1 else "subsections"
    print(f"vmstate-guard: {len(run.proofs)} {noun} run under KVM in {run.seconds:.0f} s", file=sys.stderr)
    verified = {p.subsection for p in run.patched if p.result == PATCH_VERIFIED}
    lost = any(p.result == CONFIRMED and p.subsection not in verified for p in run.proofs)
    return EXIT_FINDINGS if lost or any(p.result == PATCH_FAILED for p in run.patched) else EXIT_CLEAN


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "completion":
        from .completion import script

        _write(script(build_parser(), args.shell), None)
        return EXIT_CLEAN
    if args.command == "explain":
        from .rules import find_rule

        explained = find_rule(args.rule)
        if explained is None:
            raise InputError(f"no rule {args.rule!r}; `vmstate-guard --list-rules` lists them")
        _write(explained.documentation + "\n", None)
        return EXIT_CLEAN
    if args.command in ("audit", "check"):
        return _report_findings(args)
    if args.command == "fix":
        return _write_patches(args)
    if args.command == "prove":
        return _prove(args)
    if args.command == "graph":
        from .audit import analyse_units, skipped_files
        from .graph import build_graph
        from .reports.graph_export import render as render_graph

        if args.output:
            refuse_inside(args.output, [args.tree])
        progress = _progress(not args.quiet)
        analyses = analyse_units(args.tree, args.target, progress, cache=_facts_cache(args), jobs=args.jobs)
        progress.done()
        _warn_skipped(skipped_files(analyses))
        _write(render_graph(build_graph(analyses), args.format), args.output)
        return EXIT_CLEAN
    parser.print_help(sys.stderr)
    return EXIT_ERROR


class _Terminated(BaseException):
    """SIGTERM (a cancelled CI job), raised like KeyboardInterrupt so that the
    worker processes are stopped on the way out."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    # The parser of the command named first (options cannot come before it), else the whole one.
    parser = build_parser(arguments[0] if arguments and arguments[0] in _COMMANDS else None)
    args = parser.parse_args(arguments)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return _run(args, parser)
    except InputError as error:
        print(printable(f"vmstate-guard: error: {error}"), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("vmstate-guard: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("vmstate-guard: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM  # what a shell reports for a process SIGTERM ended
    except Exception as error:  # the last line of defence: one line, not a traceback
        if os.environ.get("VMSTATE_GUARD_DEBUG"):
            raise
        print(
            f"vmstate-guard: internal error: {type(error).__name__}: {error} "
            "(please report it; VMSTATE_GUARD_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
