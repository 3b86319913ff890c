"""Report formats: each module renders findings or the graph, never re-runs analysis."""
