"""The library API the README shows keeps working: every name its Python example imports exists
where the README says (the layers moved into folders; their packages re-export what users call)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def test_every_import_in_the_readme_examples_resolves():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has a Python example"
    imported = []
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trustkit"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                    imported.append(f"{node.module}.{alias.name}")
    assert "trustkit.ops.sign_tags" in imported and "trustkit.client.NotaryClient" in imported


def test_the_package_says_it_is_typed():
    """PEP 561: type checkers read trustkit's own hints only when py.typed ships with it."""
    import tomllib
    from importlib.resources import files

    assert files("trustkit").joinpath("py.typed").is_file()
    pyproject = tomllib.loads((README.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["trustkit"]
