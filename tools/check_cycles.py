"""No import cycles inside a package: ``python -m tools.check_cycles controller``.

grimp builds the import graph, counting imports under ``if TYPE_CHECKING:`` and
inside functions: a cycle hidden there still ties the modules together. Every
distinct shortest cycle is printed, each import with its file and line, and the
exit status is 1 when there is one.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import grimp


def _namespace_packages(root: Path) -> list[str]:
    """Folders of modules without an ``__init__.py``: grimp only walks into them
    when named, and a cycle through them would otherwise go unseen."""
    found: list[str] = []
    for folder in sorted(p for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        if not (folder / "__init__.py").exists() and any(folder.glob("*.py")):
            found.append(".".join(folder.relative_to(root.parent).parts))
    return found


def build_graph(root: Path) -> grimp.ImportGraph:
    """The import graph of the package in folder ``root``."""
    parent = str(root.resolve().parent)
    sys.path.insert(0, parent)  # grimp finds the package by importing its name's spec
    try:
        return grimp.build_graph(root.name, *_namespace_packages(root), cache_dir=None)
    finally:
        sys.path.remove(parent)


def find_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Each cycle as (a, b, ..., a), starting at its smallest module; one per
    import that lies on a cycle, the shortest through that import, deduplicated."""
    cycles: set[tuple[str, ...]] = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(imported, importer)
            if back is None:
                continue
            ring = (importer, *back[:-1])
            start = ring.index(min(ring))
            rotated = ring[start:] + ring[:start]
            cycles.add((*rotated, rotated[0]))
    return sorted(cycles, key=lambda cycle: (len(cycle), cycle))


def describe(graph: grimp.ImportGraph, root: Path, cycle: tuple[str, ...]) -> str:
    lines = [f"import cycle: {' -> '.join(cycle)}"]
    for importer, imported in itertools.pairwise(cycle):
        where = _module_file(root, importer)
        for detail in graph.get_import_details(importer=importer, imported=imported):
            lines.append(f"  {where}:{detail['line_number']}: {detail['line_contents']}")
    return "\n".join(lines)


def _module_file(root: Path, module: str) -> str:
    path = root.parent.joinpath(*module.split("."))
    return str(path / "__init__.py") if path.is_dir() else f"{path}.py"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tools.check_cycles PACKAGE_FOLDER", file=sys.stderr)
        return 2
    root = Path(argv[0])
    graph = build_graph(root)
    cycles = find_cycles(graph)
    for cycle in cycles:
        print(describe(graph, root, cycle))
    if cycles:
        print(f"{root}: {len(cycles)} import cycle(s); break them (a TYPE_CHECKING or "
              "function-level import counts too)")
        return 1
    print(f"{root}: no import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
