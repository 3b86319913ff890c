"""Graph exports: GraphML, Graphviz DOT and node-link JSON, all deterministic."""

from __future__ import annotations

import io
import json

import networkx as nx


def _node_id(node: tuple[str, str]) -> str:
    path, symbol = node
    return f"{path}#{symbol}" if path else symbol


def _sorted_copy(graph: nx.MultiDiGraph[tuple[str, str]]) -> nx.MultiDiGraph[str]:
    """A copy with string ids and nodes and edges in a stable order."""
    out: nx.MultiDiGraph[str] = nx.MultiDiGraph()
    for node in sorted(graph.nodes):
        out.add_node(_node_id(node), **{k: v for k, v in sorted(graph.nodes[node].items())})
    edges = sorted(graph.edges(keys=True, data=True), key=lambda e: (e[0], e[1], e[2]))
    for source, target, key, data in edges:
        out.add_edge(_node_id(source), _node_id(target), key=key, **dict(sorted(data.items())))
    return out


def _quote(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render(graph: nx.MultiDiGraph[tuple[str, str]], fmt: str) -> str:
    stable = _sorted_copy(graph)
    if fmt == "graphml":
        buffer = io.BytesIO()
        nx.write_graphml(stable, buffer, encoding="utf-8")
        return buffer.getvalue().decode("utf-8")
    if fmt == "json":
        data = nx.node_link_data(stable, edges="edges")
        return json.dumps(data, indent=2) + "\n"
    if fmt == "dot":
        lines = ["digraph vmstate_guard {", "  rankdir=LR;"]
        for node, data in stable.nodes(data=True):
            attributes = " ".join(f"{k}={_quote(v)}" for k, v in data.items())
            lines.append(f"  {_quote(node)} [label={_quote(node)} {attributes}];")
        for source, target, data in stable.edges(data=True):
            attributes = " ".join(f"{k}={_quote(v)}" for k, v in data.items())
            lines.append(f"  {_quote(source)} -> {_quote(target)} [label={_quote(data['kind'])} {attributes}];")
        lines.append("}")
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown graph format {fmt!r}")
