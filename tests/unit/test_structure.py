"""The package's shape (pure, no servers): no import cycles, the node's code free of the
lab's tools, modules under 500 lines, a command line that starts without the drill,
the bench or matplotlib, and the py.typed marker.

Each rule names what taught it: `redis-forwarder --help` took over a second when the
command line imported the drill and the bench; cycles between topology/, coordination/
and the sinks had to be untangled by hand (settings.py, gate.py); a node's image carried
matplotlib for a picture only drills draw.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "redis_forwarder"
MAX_LINES = 500
# Where the lab's tools may be imported from: the tools themselves and the command line.
TOOLS = ("lab", "drill", "bench")
TOOL_USERS = (*TOOLS, "cli", "__main__")
# Never loaded by a command that is not a lab tool.
HEAVY = (f"{PACKAGE}.drill", f"{PACKAGE}.bench", "matplotlib")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its
    ``__init__``)."""
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: list[ast.stmt], *, in_functions: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run: at module level (into if/try/with/class bodies,
    not under ``if TYPE_CHECKING:``), and inside functions too when ``in_functions``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _imports(node.body, in_functions=in_functions)
            yield from _imports(node.orelse, in_functions=in_functions)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if in_functions:
                yield from _imports(node.body, in_functions=in_functions)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    statements = [c for c in children if isinstance(c, ast.stmt)]
                    for handler in (c for c in children if isinstance(c, ast.ExceptHandler)):
                        statements += handler.body
                    yield from _imports(statements, in_functions=in_functions)


def imported_modules(name: str, *, in_functions: bool = False) -> set[str]:
    """The package's modules that ``name`` imports. ``from pkg import submodule`` is an
    edge to the submodule only; importing a submodule is not an edge to its parent's
    ``__init__`` (Python runs it, but a cycle through it is not this module's doing)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _imports(tree.body, in_functions=in_functions):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level or not node.module:
            raise AssertionError(f"{name}: relative import; the package uses absolute ones")
        submodules = {f"{node.module}.{alias.name}" for alias in node.names} & MODULES.keys()
        found |= submodules
        if len(submodules) < len(node.names):  # names defined in node.module itself
            found.add(node.module)
    return {m for m in found if m in MODULES and m != name}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return cycles


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    graph = {name: imported_modules(name) for name in MODULES}
    cycles = import_cycles(graph)
    described = [
        " <-> ".join(cycle)
        + "\n    "
        + "\n    ".join(f"{m} imports {', '.join(sorted(graph[m] & set(cycle)))}" for m in cycle)
        for cycle in cycles
    ]
    assert not cycles, "import cycles (module-level imports):\n  " + "\n  ".join(described)


def _area(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_only_the_tools_and_the_cli_import_the_lab_drill_and_bench() -> None:
    """A node runs without the lab's tools: only cli/, lab/, drill/, bench/ and
    __main__ may import them (anywhere in the module: a lazy import counts too)."""
    offenders = []
    for name in MODULES:
        if _area(name) in TOOL_USERS:
            continue
        tools = sorted(m for m in imported_modules(name, in_functions=True) if _area(m) in TOOLS)
        if tools:
            offenders.append(f"{name} imports {', '.join(tools)}")
    assert not offenders, "the node's code imports the lab's tools:\n  " + "\n  ".join(offenders)


def test_modules_stay_under_500_lines() -> None:
    """DESIGN.md's style: small modules with one job; split along a real seam."""
    long = {
        name: count
        for name, path in MODULES.items()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split each along a seam): " + ", ".join(
        f"{name} ({count})" for name, count in sorted(long.items())
    )


def test_py_typed_ships_with_the_package() -> None:
    assert (SRC / PACKAGE / "py.typed").is_file(), "src/redis_forwarder/py.typed is missing"


def loaded_by(*argv: str) -> tuple[set[str], int | str | None]:
    """The modules loaded when the command line runs with ``argv`` (in a subprocess),
    and its exit code."""
    script = (
        "import json, sys\n"
        f"sys.argv = ['redis-forwarder', *{list(argv)!r}]\n"
        "code = None\n"
        "if sys.argv[1:] == ['(import only)']:\n"
        "    import redis_forwarder.cli.main\n"
        "else:\n"
        "    from redis_forwarder.cli.main import main\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exc:\n"
        "        code = exc.code\n"
        "print(json.dumps([code, sorted(sys.modules)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    code, modules = json.loads(done.stdout.splitlines()[-1])
    return set(modules), code


def _heavy(modules: set[str], *, lab: bool) -> list[str]:
    heavy = (*HEAVY, f"{PACKAGE}.lab") if lab else HEAVY
    return sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in heavy))


@pytest.mark.parametrize(
    "argv",
    [
        ("(import only)",),
        ("--help",),
        ("--version",),
        ("status", "--help"),
        ("drain", "--help"),
        ("rebalance", "--help"),
        ("run", "--help"),
        ("topology", "--help"),
        # the commands' bodies too, as far as they get without a server
        ("drain", "n1", "--config", "/nonexistent/forwarder.toml"),
        ("topology", "--standalone", "127.0.0.1:1", "--timeout", "0.1", "--json"),
    ],
    ids=lambda argv: " ".join(argv),
)
def test_the_command_line_starts_without_the_lab_tools(argv: tuple[str, ...]) -> None:
    """`status --help` took 0.6-0.75 s when cli/main.py imported every command and with
    them the drill, the bench and the lab (matplotlib waited only behind a function)."""
    modules, code = loaded_by(*argv)
    assert code in (None, 0, 2, 5), f"redis-forwarder {' '.join(argv)} exited {code}"
    loaded = _heavy(modules, lab=True)
    assert not loaded, f"redis-forwarder {' '.join(argv)} loads " + ", ".join(loaded)


def test_the_lab_commands_start_without_the_drill_and_bench() -> None:
    modules, code = loaded_by("lab", "--help")
    assert code in (None, 0)
    loaded = _heavy(modules, lab=False)
    assert not loaded, "redis-forwarder lab --help loads " + ", ".join(loaded)
