"""The layers of DESIGN.md import only the layers above them; only `cli` imports click."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "trustkit"

# Order from DESIGN.md: a module may import its own layer and the ones listed before it.
LAYERS = [
    ("errors", {"errors", "__init__"}),
    ("encoding", {"encoding"}),
    ("reference", {"reference", "roles"}),
    ("keys", {"keys"}),
    ("metadata", {"metadata"}),
    ("trust", {"trust", "resolution"}),
    ("repository", {"repository"}),
    ("clients", {"notary", "registry", "auth", "signing", "updater", "config", "_httpx", "sources", "push"}),
    ("server", {"server"}),
    ("cli", {"cli", "__main__"}),
]
RANK = {top: i for i, (_, tops) in enumerate(LAYERS) for top in tops}


def top_level(module_path: Path) -> str:
    rel = module_path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imported_trustkit_modules(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trustkit"):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "trustkit" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_module_has_a_layer():
    unknown = {top_level(p) for p in PACKAGE.rglob("*.py")} - set(RANK)
    assert not unknown, f"add these to LAYERS in this test and DESIGN.md: {unknown}"


def test_imports_point_up_the_layers():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        mine = RANK[top_level(path)]
        for target in imported_trustkit_modules(path.read_text()):
            if target in RANK and RANK[target] > mine and target != "__init__":
                problems.append(f"{path.relative_to(PACKAGE)} imports trustkit.{target}")
    assert not problems, "\n".join(problems)


def test_only_cli_imports_click():
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if top_level(p) not in ("cli", "__main__") and "import click" in p.read_text()
    ]
    assert not offenders


def test_the_import_scanner_sees_both_import_forms():
    assert imported_trustkit_modules("from trustkit.cli.keys import key\nimport trustkit.server.app") == {"cli", "server"}
    assert imported_trustkit_modules("from trustkit import errors") == {"errors"}
