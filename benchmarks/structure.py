"""Figures about the code's structure, counted from its source (run by hand; issue 20's table).

    .venv/bin/python benchmarks/structure.py [SRC]        # default: src/daar of this checkout

Prints: lines of Python; modules over 300 and over 400 lines; import circles between modules
(every `import` of a daar module, at any depth, is an arrow); arrows that run back up the data
flow (LAYERS below); run-folder writers (modules outside write/ that call its file writers) and
manifest builders (modules that build a dict with a "created" key); imports inside functions.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# The data flow, lowest first: a module may import from its own layer or a lower one. Stage
# folders follow the pool: read it, embed it, probe it, select from it, write the run; tuning,
# evaluation, analysis and reports use selections; the whole-run commands and the CLI sit on top.
LAYERS = [
    ("daar", "errors", "utils"),  # "daar": the package's face (its version), which imports nothing
    ("config", "options", "models", "read", "write"),
    ("embed", "probe", "reward"),
    ("select",),
    ("tune", "evaluate", "analyze", "report"),
    ("pipeline", "scale"),
    ("coevolve",),
    ("experiment",),
    # commands: the select command's module before 0.2
    ("select_command", "cache_command", "commands", "cli", "__main__"),
]
WRITERS = {"clear_outputs", "write_rows", "write_scores", "account", "finish"}


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "src" / "daar")
    modules = {_name(path, src): path for path in sorted(src.rglob("*.py"))}
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in modules.items()}
    lines = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules.items()}
    graph = {name: _imports(tree, name, modules) for name, tree in trees.items()}
    circles = _circles(graph)
    up = [(a, b) for a, targets in graph.items() for b in targets if _layer(b) > _layer(a)]
    writers = sorted(n for n, tree in trees.items() if not n.startswith("daar.write") and _calls(tree) & WRITERS)
    builders = sorted(n for n, tree in trees.items() if _has_created_key(tree))
    inside = sum(_imports_inside_functions(tree) for tree in trees.values())
    ours = sum(_imports_inside_functions(tree, daar_only=True) for tree in trees.values())
    print(f"| figure | value |\n|---|--:|\n| Python lines in {src.name}/ | {sum(lines.values()):,} |")
    print(f"| modules over 300 lines | {sum(v > 300 for v in lines.values())} |")
    print(f"| modules over 400 lines | {sum(v > 400 for v in lines.values())} |")
    print(f"| import circles | {len(circles)} |")
    print(f"| arrows back up the data flow | {len(up)} |")
    print(f"| run-folder writers outside write/ | {len(writers)} |")
    print(f"| manifest builders (dicts with a 'created' key) | {len(builders)} |")
    print(f"| imports inside functions (of daar modules) | {inside} ({ours}) |")
    for circle in circles:
        print("circle:", " -> ".join(circle))
    for a, b in up:
        print(f"back up: {a} -> {b}")
    print("writers:", ", ".join(writers) or "none", "| manifest builders:", ", ".join(builders) or "none")
    print("over 400 lines:", ", ".join(f"{n} ({v})" for n, v in lines.items() if v > 400) or "none")


def _name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["daar", *parts])


def _imports(tree: ast.AST, name: str, modules: dict[str, Path]) -> set[str]:
    """The daar modules `name` imports (a package's __init__ counts only when imported itself)."""
    found: set[str] = set()
    package = name if modules[name].name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def _layer(module: str) -> int:
    room = module.split(".")[1] if "." in module else "daar"
    for index, rooms in enumerate(LAYERS):
        if room in rooms:
            return index
    return len(LAYERS)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _calls(tree: ast.AST) -> set[str]:
    """Functions called by their bare name (write/'s file writers are imported that way)."""
    return {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


def _has_created_key(tree: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "created" for k in node.keys)
        for node in ast.walk(tree)
    )


def _imports_inside_functions(tree: ast.AST, inside: bool = False, daar_only: bool = False) -> int:
    """Import statements inside a function, each counted once; with `daar_only`, those of daar's own
    modules (a heavy library imported where it is needed is a choice; one of daar's, a symptom)."""
    count = 0
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Import | ast.ImportFrom) and inside:
            names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or "."]
            count += not daar_only or any(n.startswith(("daar", ".")) for n in names)
        function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        count += _imports_inside_functions(child, inside or function, daar_only)
    return count


if __name__ == "__main__":
    main()
