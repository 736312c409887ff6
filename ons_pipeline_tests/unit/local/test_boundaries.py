"""Laptop-only code stays in `ons_pipeline/local/`, and nothing else depends on it.

The groups, resources and platform are what production (and the Lambda image) runs: they
never import `ons_pipeline.local` (the demo, its data generators, the local stack), and no
group reaches back up to the entry point `ons_pipeline.definitions`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "ons_pipeline"
ROOT = PACKAGE.parent
GROUPS = ("sales", "energy", "visits", "platform")


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (functions and TYPE_CHECKING blocks too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _production_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if PACKAGE / "local" not in p.parents]


def _offenders(paths: list[Path], forbidden: str) -> list[str]:
    return sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in _imports(path)
        if name == forbidden or name.startswith(f"{forbidden}.")
    )


def test_no_production_module_imports_the_local_package() -> None:
    modules = _production_modules()
    assert len(modules) > 40  # the scan sees the package
    assert _offenders(modules, "ons_pipeline.local") == []


def test_no_group_imports_the_entry_point() -> None:
    groups = [p for group in GROUPS for p in (PACKAGE / group).rglob("*.py")]
    assert _offenders(groups, "ons_pipeline.definitions") == []


def test_no_demo_or_data_generator_is_left_in_a_group() -> None:
    left = sorted(
        str(p.relative_to(ROOT))
        for group in GROUPS
        for p in (PACKAGE / group).rglob("*.py")
        if p.name.startswith("demo")
    )
    assert left == []


def test_the_demo_uses_dagster_public_api_only() -> None:
    demo = list((PACKAGE / "local" / "demo").rglob("*.py"))
    assert demo
    assert _offenders(demo, "dagster._core") == []


def test_the_lambda_image_leaves_the_local_package_out() -> None:
    dockerfile = (ROOT / "deploy" / "lambda" / "Dockerfile").read_text()
    assert "COPY ons_pipeline " in dockerfile  # the whole package is copied ...
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "ons_pipeline/local/" in ignored  # ... less the laptop-only part
