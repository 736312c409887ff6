"""One rule for postponed annotations across the package, checked rather than remembered.

Every module has `from __future__ import annotations`, except the modules that define
assets or asset checks: Dagster reads those functions' annotations at definition time and
refuses a `context` annotated with a string.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ons_pipeline"
ASSET_DECORATORS = {"asset", "multi_asset", "asset_check", "multi_asset_check", "graph_asset"}


def _decorator_name(node: ast.expr) -> str | None:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else None


def _defines_assets(tree: ast.Module) -> bool:
    return any(
        _decorator_name(decorator) in ASSET_DECORATORS
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for decorator in node.decorator_list
    )


def _postpones(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )


def test_every_module_postpones_annotations_unless_it_defines_assets() -> None:
    wrong: list[str] = []
    asset_modules = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        if not tree.body:
            continue  # an empty __init__.py
        defines_assets = _defines_assets(tree)
        asset_modules += defines_assets
        if _postpones(tree) == defines_assets:
            should = "must not postpone" if defines_assets else "must postpone"
            wrong.append(f"{path.relative_to(PACKAGE.parent)} {should} annotations")
    assert asset_modules >= 4  # the scan sees the groups' asset modules
    assert wrong == []
