"""Report formats: each module renders results, never re-runs analysis."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..audit import AuditResult

# Formats of `audit` and `check`, by the name users pass to --format, and their modules.
_MODULES = {
    "text": "text",
    "json": "json_report",
    "sarif": "sarif",
    "gitlab": "gitlab",
    "github": "github",
    "html": "html",
}
FINDING_FORMATS = tuple(_MODULES)
# Those that leave out notes on code no analysis uses unless asked (--verbose).
_VERBOSE_FORMATS = ("text", "sarif", "html")


# Formats of `graph` (reports.graph_export), here so that parsing the command
# line does not import networkx.
GRAPH_FORMATS = ("graphml", "dot", "json")


def renderer(name: str, verbose: bool = False) -> Callable[[AuditResult], str]:
    """The chosen format's render function; only its module is imported
    (html's jinja2 and pygments cost more than a cached run)."""
    module = import_module(f"{__name__}.{_MODULES[name]}")
    render: Callable[..., str] = module.render
    return partial(render, verbose=verbose) if name in _VERBOSE_FORMATS else render


# Formats of `prove`: the audit's, with each subsection's result under KVM.
PROOF_FORMATS = ("text", "json", "sarif", "html")


def proof_renderer(name: str) -> Callable[[AuditResult], str]:
    """Text lists the runs; the other formats are the audit's with the proofs joined in."""
    if name == "text":
        from . import proof_text

        return proof_text.render
    return renderer(name)


def printable(text: str) -> str:
    """`text` with control and other unprintable characters escaped (`\\x1b`, `\\n`, `\\u202e`).

    File and subsection names come from the analysed tree: raw, an escape
    sequence could retitle a terminal, and a newline could forge a
    `path:line: warning:` line that CI parses."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in "\n\t\r":
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
