"""The layers of DESIGN.md, held on the real import graph.

Every module belongs to a layer by its place in the tree (a folder per layer, the base modules at
the top).  A module imports only its own layer and the layers ranked before it; the server and the
client side never import each other; third-party libraries stay in their layers; and module-level
imports form no cycle (a package's ``__init__`` counts as its own module).  A subprocess then
imports each layer's entry points and checks what actually got loaded, as click's
``test_imports.py`` does.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "trustkit"

# DESIGN.md's table, in order: a module may import its own layer and any layer before it.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"__init__", "errors", "encoding", "reference", "roles", "notary_api"}),
    ("keys", {"keys"}),
    ("metadata", {"metadata"}),
    ("trust", {"trust"}),
    ("client", {"client"}),
    ("oci", {"oci"}),
    ("ops", {"ops", "mirror", "offline"}),
    ("server", {"server"}),
    ("cli", {"cli", "__main__"}),
]
RANK = {top: i for i, (_, tops) in enumerate(LAYERS) for top in tops}
LAYER_OF = {top: name for name, tops in LAYERS for top in tops}
CLIENT_SIDE = {"client", "oci", "ops"}

# Third-party packages and the layers allowed to import them.
THIRD_PARTY = {
    "httpx": CLIENT_SIDE | {"cli"},
    "starlette": {"server"},
    "uvicorn": {"server"},
    "sqlalchemy": {"server"},
    "psycopg": {"server"},
    "jwt": {"server"},
    "bcrypt": {"server"},
    "click": {"cli"},
    # keys by URI: only the key layer talks to tokens and KMS (the signing code asks it for Signers)
    "securesystemslib": {"keys"},
    "pkcs11": {"keys"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return LAYER_OF[parts[1] if len(parts) > 1 else "__init__"]


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, *, top_level_only: bool) -> set[str]:
    """Modules ``module`` imports: ``from a.b import c`` names ``a.b.c`` when that is a module of
    ours, else ``a.b``.  ``top_level_only``: what runs at import time (no function bodies, no
    ``if TYPE_CHECKING``)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in MODULES else base)
            if top_level_only:
                if isinstance(node, ast.If) and not _is_type_checking(node):
                    visit(node.body + node.orelse)
                elif isinstance(node, ast.Try):
                    visit(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
            else:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child])
                    else:
                        for inner in ast.walk(child):
                            if isinstance(inner, ast.stmt):
                                visit([inner])

    visit(tree.body)
    return found


def test_every_module_has_a_layer():
    unknown = {m for m in MODULES if (m.split(".")[1] if "." in m else "__init__") not in RANK}
    assert not unknown, f"give these a layer in this test and in DESIGN.md: {sorted(unknown)}"


def test_imports_point_up_the_layers():
    problems = []
    for module in MODULES:
        mine = layer_of(module)
        for target in imports(module, top_level_only=False):
            if not target.startswith("trustkit.") and target != "trustkit":
                continue
            theirs = layer_of(target) if target != "trustkit" else "base"
            if RANK[theirs] > RANK[mine] if theirs in RANK else False:
                problems.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert not problems, "\n".join(problems)


def test_server_and_client_side_never_import_each_other():
    problems = []
    for module in MODULES:
        mine = layer_of(module)
        for target in imports(module, top_level_only=False):
            if target.startswith("trustkit."):
                theirs = layer_of(target)
                if (mine == "server" and theirs in CLIENT_SIDE) or (mine in CLIENT_SIDE and theirs == "server"):
                    problems.append(f"{module} imports {target}")
    assert not problems, "\n".join(problems)


def test_third_party_libraries_stay_in_their_layers():
    problems = []
    for module in MODULES:
        mine = layer_of(module)
        for target in imports(module, top_level_only=False):
            package = target.split(".")[0]
            if package in THIRD_PARTY and mine not in THIRD_PARTY[package]:
                problems.append(f"{module} ({mine}) imports {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    graph = {m: {t for t in imports(m, top_level_only=True) if t in MODULES and t != m} for m in MODULES}
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(
                    " -> ".join(stack[stack.index(nxt) :] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}"
                )
            elif nxt not in state:
                walk(nxt, [*stack, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [])
    assert not cycles, "\n".join(cycles)


def _loaded_by(entry: str) -> set[str]:
    code = f"import sys, json; import {entry}; print(json.dumps(sorted(sys.modules)))"
    return set(
        json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    )


def test_what_each_layer_really_loads():
    """Import a layer's entry point in a fresh interpreter and look at sys.modules.

    httpx 0.28 imports its own command-line tool (click, and pygments when pytest brought it)
    whenever they are installed; that is httpx's start-up cost, not an import of ours, so what
    ``import httpx`` loads by itself is not held against a layer that may use httpx."""
    httpx_itself = _loaded_by("httpx")
    checks = {
        "trustkit.trust": {"httpx", "starlette", "sqlalchemy", "click", "trustkit.client", "trustkit.server"},
        "trustkit.client.notary": {
            "starlette",
            "sqlalchemy",
            "uvicorn",
            "click",
            "trustkit.server",
            "trustkit.cli",
        },
        "trustkit.ops": {"starlette", "sqlalchemy", "uvicorn", "click", "trustkit.server", "trustkit.cli"},
        "trustkit.server.app": {
            "httpx",
            "click",
            "trustkit.client",
            "trustkit.oci",
            "trustkit.ops",
            "trustkit.cli",
        },
    }
    for entry, forbidden in checks.items():
        loaded = _loaded_by(entry)
        if "httpx" not in forbidden:
            loaded -= httpx_itself
        bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))
        assert not bad, f"importing {entry} loads {bad}"


def test_the_scanner_sees_every_import_form():
    assert "trustkit.keys.public" in imports("trustkit.trust.trusted_set", top_level_only=True)
    lazy = imports("trustkit.cli.server", top_level_only=False) - imports("trustkit.cli.server", top_level_only=True)
    assert "trustkit.server.config" in lazy
