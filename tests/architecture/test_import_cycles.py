"""No import circles anywhere in the product: every module of shared/, functions/ and tui/ can be read from the
bottom up (imports made only for the type checker, or inside functions, count too)."""

from __future__ import annotations

import itertools

import grimp

PACKAGES = ("shared", "functions", "tui")


def cycles(graph: grimp.ImportGraph, modules: list[str]) -> list[tuple[str, str]]:
    """Pairs of modules that import each other, directly or through others."""
    found = []
    for a, b in itertools.combinations(sorted(modules), 2):
        if graph.find_shortest_chain(importer=a, imported=b) and graph.find_shortest_chain(importer=b, imported=a):
            found.append((a, b))
    return found


def test_no_module_imports_one_that_imports_it_back():
    graph = grimp.build_graph(*PACKAGES)
    modules = [m for m in graph.modules if m.split(".")[0] in PACKAGES]
    assert len(modules) > 100  # the whole product was read
    assert cycles(graph, modules) == []


def test_the_check_finds_a_circle():
    # Given a graph where a imports b, b imports c and c imports a, and d stands apart
    graph = grimp.ImportGraph()
    for module in ("p.a", "p.b", "p.c", "p.d"):
        graph.add_module(module)
    for importer, imported in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.d", "p.a")):
        graph.add_import(importer=importer, imported=imported)
    # Then each pair on the circle is found, and nothing with d
    assert cycles(graph, sorted(graph.modules)) == [("p.a", "p.b"), ("p.a", "p.c"), ("p.b", "p.c")]
