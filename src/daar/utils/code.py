"""The code version of a cached result: a digest of every daar module its entry module can reach.

Why not a hand list of modules: the first evidence study's cells were keyed on one that left out
the probe heads, the feature extractor and the selector contract, so a change to the heads would
have reused cells computed with the old ones. The closure is read from the source (every `import
daar...` and `from daar... import ...`, at the top of a module or inside a function), so a module
that a result depends on cannot be forgotten (a string naming a daar module, as lazy exports and
importlib calls do, counts as an import), and an edit anywhere in it, docstrings included,
computes the result again (a recomputation costs minutes, a stale result costs trust).

One package is left out on purpose: `daar.report` only renders HTML from results already computed
and is never read back into a number (PRESENTATION). Everything else reachable counts.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import daar

ROOT = Path(daar.__file__).resolve().parent
PRESENTATION = ("daar.report",)
_MODULE_PATH = re.compile(r"daar(\.[A-Za-z_][A-Za-z0-9_]*)+")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of daar module or package `name` under `root` (None when there is none)."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Every daar module named by an import statement of `path` (a `from pkg import name` names
    pkg.name when that is a module, else pkg), or by a string that is a module path: a package's
    lazy exports (daar.utils.lazy) and importlib calls name their modules that way."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_PATH.fullmatch(node.value):
            found.add(node.value)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "daar"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "daar":
                continue
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _package_modules(name: str, root: Path) -> list[str]:
    """A package's own modules, sub-packages included (a registry finds its members by name)."""
    path = module_file(name, root)
    if path is None or path.name != "__init__.py":
        return []
    folder = path.parent
    return sorted(
        ".".join([name, *file.relative_to(folder).with_suffix("").parts]).removesuffix(".__init__")
        for file in folder.rglob("*.py")
    )


def closure(entries: Iterable[str], root: Path = ROOT, exclude: tuple[str, ...] = PRESENTATION) -> list[str]:
    """The daar modules `entries` reach through imports, sorted; a package entry brings all its modules,
    and an imported package its `__init__` (and what that imports)."""
    todo = [m for entry in entries for m in [entry, *_package_modules(entry, root)]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or any(name == e or name.startswith(e + ".") for e in exclude):
            continue
        path = module_file(name, root)
        if path is None:
            continue  # an imported name that is not a module (a function, a class)
        seen.add(name)
        todo += sorted(_imports(path))
        parent = name.rsplit(".", 1)[0]
        if parent != name:
            todo.append(parent)  # importing a.b runs a/__init__.py first
    return sorted(seen)


def closure_digest(entries: Iterable[str], root: Path = ROOT, exclude: tuple[str, ...] = PRESENTATION) -> str:
    """A digest of the source of every module in `closure(entries)`, names included."""
    digest = hashlib.sha256()
    for name in closure(entries, root, exclude):
        path = module_file(name, root)
        assert path is not None
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@cache
def code_closure(entries: tuple[str, ...]) -> str:
    """`closure_digest` of the installed package, once per process and entry tuple."""
    return closure_digest(entries)
