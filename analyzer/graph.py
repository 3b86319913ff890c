"""The evidence graph of one tree: subsections, functions, fields, flags, probes, compat.

Nodes are keyed by (path, symbol) because QEMU reuses static names across
files; tree-wide things (CPU state members, probe constants) have path "".
Every edge carries the location that is its evidence.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from .audit import Analysis
from .capabilities import Probe

Node = tuple[str, str]


def _flag_node(key: str) -> tuple[Node, str]:
    kind, _, rest = key.partition(":")
    if kind == "call":
        return ("", f"{rest}()"), "accessor"
    if kind == "field":
        return ("", rest), "flag"
    path, _, name = rest.rpartition(":")
    if kind == "local":
        path, _, function = path.rpartition(":")
        return (path, f"{function}.{name}"), "flag"
    return (path, name), "flag"


def build_graph(analyses: Iterable[Analysis]) -> nx.MultiDiGraph[Node]:
    """One graph for every unit: probes and accessors they share are one node."""
    graph: nx.MultiDiGraph[Node] = nx.MultiDiGraph()
    for analysis in analyses:
        _add_unit(graph, analysis)
    return graph


def _add_unit(graph: nx.MultiDiGraph[Node], analysis: Analysis) -> None:
    capabilities = analysis.capabilities

    def node(key: Node, kind: str, **attributes: object) -> Node:
        if key not in graph:
            graph.add_node(key, kind=kind, path=key[0], symbol=key[1], **attributes)
        return key

    def edge(source: Node, target: Node, kind: str, path: str, line: int, **attributes: object) -> None:
        graph.add_edge(source, target, key=f"{kind}@{path}:{line}", kind=kind, path=path, line=line, **attributes)

    def probe_node(probe: Probe) -> Node:
        return node(("", probe.name), "probe", probe_kind=probe.kind)

    for call in analysis.put_calls:
        # The put path from kvm_arch_put_registers down to each KVM write.
        edge(
            node((call.path, call.caller), "function"),
            node((call.callee_path, call.callee), "function"),
            "calls",
            call.path,
            call.line,
        )
    for report in analysis.subsections:
        d = report.description
        sub = node((d.path, d.symbol), "subsection", name=d.name or "", verdict=report.verdict)
        parent = node((report.parent.path, report.parent.symbol), "description", name=report.parent.name or "")
        edge(parent, sub, "lists", d.path, d.line, ifdef=report.ifdef or "")
        if d.needed:
            path, line = report.needed_at or (d.path, d.line)
            edge(sub, node((path, d.needed), "function"), "needed", path, line)
        if d.post_load:
            edge(sub, node((d.path, d.post_load), "function"), "post_load", d.path, d.line)
        for field in d.fields:
            edge(sub, node(("", field.path), "field"), "carries", d.path, field.line)
        for consumer in report.consumers:
            h = consumer.handoff
            field_node = node(("", consumer.field), "field")
            function = node((h.path, h.function), "function")
            edge(field_node, function, "handed-to-kvm", h.path, h.line, how=h.how, guards=" && ".join(consumer.guards))
        for consumer in report.consumers:
            for guard in consumer.handoff.guards:
                for atom in guard.condition.atoms():
                    for key in capabilities.capability_subjects(atom):
                        flag, kind = _flag_node(key)
                        node(flag, kind)
                        h = consumer.handoff
                        edge((h.path, h.function), flag, "guarded-by", h.path, guard.line, condition=guard.describe())
                        for probe in sorted(capabilities.probes.get(key, ())):
                            edge(flag, probe_node(probe), "probed-by", probe.path, probe.line, function=probe.function)
        if d.post_load:
            for name in report.post_load_checks:
                edge(
                    (d.path, d.post_load),
                    node(("", name), "accessor" if name.endswith("()") else "flag"),
                    "checks",
                    d.path,
                    d.line,
                )
        model = report.model_check
        if model is not None:
            # checked by the CPU-model check at realize, not by a post_load (s390x)
            path, line = model.location or ("", 0)
            check = node((path, model.function), "function")
            features = " ".join(f"{f}->{g}" for f, g in zip(model.features, model.guards, strict=True))
            edge(sub, check, "checked-by-cpu-model", path, line, features=features)
        if report.needed_at:
            for mitigation in report.compat:
                prop = mitigation.property
                prop_node = node((prop.path, prop.name), "property", member=prop.member)
                edge((report.needed_at[0], d.needed or ""), prop_node, "reads-property", prop.path, prop.line)
                for array, line in zip(mitigation.arrays, mitigation.entry_lines, strict=True):
                    array_node = node((array.path, array.symbol), "compat-array")
                    edge(prop_node, array_node, "switched-off-by", array.path, line)
                    for machine in mitigation.machines:
                        edge(
                            array_node,
                            node((machine.path, machine.name), "machine-type"),
                            "applies-to",
                            machine.path,
                            machine.line,
                        )
