"""One code location name whichever way the code is loaded (`-m`, `-w`, pyproject, deploy/)."""

from __future__ import annotations

import re
from pathlib import Path

from dagster._core.workspace.load_target import (
    ModuleTarget,
    PyProjectFileTarget,
    WorkspaceFileTarget,
)

ROOT = Path(__file__).resolve().parents[1]
MODULE = "ons_pipeline.definitions"


def _names(target: object) -> list[str]:
    return [origin.location_name for origin in target.create_origins()]  # type: ignore[attr-defined]


def test_module_workspace_and_pyproject_name_the_same_location() -> None:
    # What `dagster dev -m ons_pipeline.definitions` loads (the CLI passes no location name).
    by_module = _names(ModuleTarget(MODULE, None, str(ROOT), None))
    by_workspace = _names(WorkspaceFileTarget([str(ROOT / "workspace.yaml")]))
    by_pyproject = _names(PyProjectFileTarget(str(ROOT / "pyproject.toml")))
    assert by_module == [MODULE]
    assert by_workspace == by_module
    assert by_pyproject == by_module


def test_deploy_and_readme_load_the_module_by_the_same_name() -> None:
    """Production (deploy/) and README start the webserver and daemon with `-m`, never `-w`."""
    texts = {
        path: path.read_text()
        for path in [ROOT / "README.md", *sorted((ROOT / "deploy").rglob("*"))]
        if path.is_file() and path.suffix in {".md", ".yaml", ".tf", ""}
    }
    modules = {
        (path.name, module)
        for path, text in texts.items()
        for module in re.findall(r"(?:dagster[\w-]*|daemon run)[^\n]*?\s-m\s+([\w.]+)", text)
    }
    assert modules, "no `-m` load found in README.md or deploy/"
    assert {module for _, module in modules} == {MODULE}, modules
    other_names = r"location_name:\s*(?!ons_pipeline\.definitions)"
    assert not any(re.search(other_names, text) for text in texts.values())
