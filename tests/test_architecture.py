"""The package direction, kept: no import cycle between pacswatch's packages, and no import that
the table in docs/design.md ("Package direction") does not allow.

The table is read from docs/design.md, so the rule is written in one place and the document
cannot drift from the code. A "unit" is a top-level package (`dicom`, `store`, ...) or module
(`cli`, `record`, ...) of src/pacswatch. Every import counts: at module level, inside a function
and under `if TYPE_CHECKING:`, since each is a dependency someone has to reason about.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pacswatch"
DESIGN = ROOT / "docs" / "design.md"
TOP = "pacswatch"
LEAVES_ROW = "the leaves"  # how the table's last row starts, and how a cell names the leaves


@dataclass(frozen=True)
class Import:
    importer: str  # the unit that imports
    imported: str  # the unit it names
    where: str  # path:line, for the failure message


def _module(path: Path, package_dir: Path) -> list[str]:
    """pacswatch/store/check.py -> [pacswatch, store, check]; a package's __init__ is the package."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _unit(dotted: Sequence[str]) -> str | None:
    """The unit a dotted name belongs to; None outside pacswatch. `pacswatch` itself is `__init__`."""
    if not dotted or dotted[0] != TOP:
        return None
    return dotted[1] if len(dotted) > 1 else "__init__"


def _targets(node: ast.AST, package: list[str], top_units: set[str]) -> list[list[str]]:
    """The dotted names an import statement reaches, relative ones resolved against `package`."""
    if isinstance(node, ast.Import):
        return [alias.name.split(".") for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = package[: len(package) - node.level + 1] if node.level else []
    module = base + (node.module.split(".") if node.module else [])
    if module == [TOP]:
        # `from pacswatch import record` imports a unit; `from pacswatch import __version__`
        # a name of pacswatch/__init__.py.
        return [[TOP, alias.name] if alias.name in top_units else [TOP] for alias in node.names]
    return [module]


def imports_in(path: Path, package_dir: Path, top_units: set[str]) -> Iterator[Import]:
    """The imports of one file from one unit into another (ast.walk reaches every statement,
    inside functions and `if TYPE_CHECKING:` blocks included)."""
    here = _module(path, package_dir)
    package = here if path.name == "__init__.py" else here[:-1]
    importer = _unit(here)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        for target in _targets(node, package, top_units):
            imported = _unit(target)
            if importer and imported and imported != importer:
                yield Import(importer, imported, f"{path.relative_to(package_dir.parent)}:{node.lineno}")


def units(package_dir: Path) -> set[str]:
    """Every unit of the package: its subpackages (scan/ has no __init__.py: a directory of
    modules is one) and its top-level modules."""
    found = {p.name for p in package_dir.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    found |= {p.stem for p in package_dir.glob("*.py")}
    return found


def all_imports(package_dir: Path) -> list[Import]:
    top_units = units(package_dir)
    return [i for path in sorted(package_dir.rglob("*.py")) for i in imports_in(path, package_dir, top_units)]


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan): each is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def graph_of(imports: Sequence[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for i in imports:
        graph[i.importer].add(i.imported)
    return graph


@dataclass(frozen=True)
class Direction:
    leaves: frozenset[str]
    allowed: Mapping[str, frozenset[str]]  # unit -> the units it may import (leaves included)


def read_direction(markdown: str) -> Direction:
    """The table under "## Package direction": `| units | what they may import |`, names in
    backquotes, "the leaves" for the leaves (listed in the row that starts with those words),
    "nothing" for none."""
    section = markdown.split("\n## Package direction\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # after header and rule
    leaves: frozenset[str] = frozenset()
    cells: list[tuple[list[str], str]] = []
    for row in rows:
        first, second = (cell.strip() for cell in row.strip().strip("|").split("|"))
        names = re.findall(r"`([A-Za-z_]+)`", first)
        if first.startswith(LEAVES_ROW):
            leaves = frozenset(names)
        cells.append((names, second))
    assert leaves, "the table has no row of leaves"
    allowed: dict[str, frozenset[str]] = {}
    for names, second in cells:
        may = set(re.findall(r"`([A-Za-z_]+)`", second)) | (set(leaves) if LEAVES_ROW in second else set())
        for name in names:
            assert name not in allowed, f"{name} has two rows in the table"
            allowed[name] = frozenset(may)
    return Direction(leaves, allowed)


def against(imports: Sequence[Import], direction: Direction) -> list[Import]:
    """The imports the table does not allow (a unit missing from the table may import nothing)."""
    return [i for i in imports if i.imported not in direction.allowed.get(i.importer, frozenset())]


def _shown(imports: Sequence[Import]) -> str:
    return "\n".join(f"  {i.importer} -> {i.imported}  ({i.where})" for i in imports)


# --- the rule on the code as it is --------------------------------------------------------------


def test_no_import_cycle_between_packages():
    imports = all_imports(SRC)
    found = cycles(graph_of(imports))
    in_cycles = [i for i in imports if any({i.importer, i.imported} <= set(c) for c in found)]
    assert found == [], f"import cycles between packages: {found}\n{_shown(in_cycles)}"


def test_every_import_follows_the_direction_table():
    bad = against(all_imports(SRC), read_direction(DESIGN.read_text()))
    assert bad == [], f"imports the table in docs/design.md does not allow:\n{_shown(bad)}"


def test_the_table_names_every_package_and_nothing_else():
    named = set(read_direction(DESIGN.read_text()).allowed)
    assert named == units(SRC), (f"in src/pacswatch, not in the table: {sorted(units(SRC) - named)}; "
                                 f"in the table, not in src/pacswatch: {sorted(named - units(SRC))}")


# --- the checks catch what they are for ---------------------------------------------------------

TABLE = """
## Package direction

| package | may import |
|---|---|
| `campaign` | `store`, the leaves |
| `store` | the leaves |
| the leaves: `__init__`, `record` | the leaves |

## Next
"""


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    package_dir = tmp_path / TOP
    for name, text in {"__init__.py": "", "campaign/__init__.py": "", "store/__init__.py": "",
                       "record.py": "", **files}.items():
        (package_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (package_dir / name).write_text(text)
    return package_dir


def test_a_clean_tree_passes(tmp_path):
    package_dir = _tree(tmp_path, {
        "__init__.py": "__version__ = '1'\n",
        "campaign/run.py": "from pacswatch.store import x\nfrom . import plan\nfrom pacswatch import record\n"
                           "from pacswatch import __version__\n",
        "store/x.py": "from .. import record\nimport pacswatch.record\n",
    })
    imports = all_imports(package_dir)
    assert {(i.importer, i.imported) for i in imports} == {("campaign", "store"), ("campaign", "record"),
                                                          ("campaign", "__init__"), ("store", "record")}
    assert cycles(graph_of(imports)) == [] and against(imports, read_direction(TABLE)) == []
    assert units(package_dir) == set(read_direction(TABLE).allowed)


def test_an_upward_import_is_caught_in_a_function_and_under_type_checking(tmp_path):
    upward = (("def f():\n    from pacswatch.campaign import run\n", 2),
              ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..campaign.run import Plan\n", 3),
              ("from pacswatch import campaign\n", 1))
    for n, (source, line) in enumerate(upward):
        package_dir = _tree(tmp_path / str(n), {
            "campaign/run.py": "from pacswatch.store import x\n",
            "store/x.py": source,
        })
        imports = all_imports(package_dir)
        assert cycles(graph_of(imports)) == [["campaign", "store"]], source
        assert [(i.importer, i.imported, i.where) for i in against(imports, read_direction(TABLE))] == [
            ("store", "campaign", f"{TOP}/store/x.py:{line}")], source


def test_a_leaf_importing_a_package_is_caught(tmp_path):
    package_dir = _tree(tmp_path, {"record.py": "import pacswatch.store.x\n", "store/x.py": ""})
    bad = against(all_imports(package_dir), read_direction(TABLE))
    assert [(i.importer, i.imported) for i in bad] == [("record", "store")]


def test_a_package_missing_from_the_table_may_import_nothing(tmp_path):
    package_dir = _tree(tmp_path, {"web/__init__.py": "from pacswatch import record\n"})
    assert [(i.importer, i.imported) for i in against(all_imports(package_dir), read_direction(TABLE))] == [
        ("web", "record")]
    assert units(package_dir) - set(read_direction(TABLE).allowed) == {"web"}
