"""Every setting is read through the settings table, so its default has one home.

A module that reads the environment itself restates a default (or parses a value its own
way) that README's Configuration table, generated from the table, cannot see.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ons_pipeline.energy.migration.assets import migration_partitions
from ons_pipeline.platform.metadata import aws_retry_policy
from ons_pipeline.resources import SettingError, settings

PACKAGE = Path(__file__).resolve().parents[3] / "ons_pipeline"
# The table itself, and the laptop-only stack (its processes' private wiring variables).
EXEMPT = (PACKAGE / "resources" / "settings.py", PACKAGE / "local")


def _is_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _environment_reads(path: Path) -> list[str]:
    """`os.environ.get(...)`, `os.getenv(...)` and `os.environ[...]` reads in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        read = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and (
                (node.func.attr == "get" and _is_environ(node.func.value))
                or (
                    node.func.attr == "getenv"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "os"
                )
            )
        ) or (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and _is_environ(node.value)
        )
        if read:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_module_reads_a_setting_from_the_environment_itself() -> None:
    modules = [
        path
        for path in PACKAGE.rglob("*.py")
        if not any(path == exempt or exempt in path.parents for exempt in EXEMPT)
    ]
    assert len(modules) > 40  # the scan sees the package
    assert [read for path in modules for read in _environment_reads(path)] == []


def test_the_migration_partitions_start_at_the_tables_default() -> None:
    start = migration_partitions.start.strftime("%Y-%m-%d")
    assert start == settings.default("ONS_MIGRATION_START_DATE")


@pytest.mark.parametrize("value", [" Stopped ", "RUNNING"])
def test_a_choice_is_read_case_insensitively(value: str) -> None:
    read = settings.read("ONS_VISITS_AUTOMATION", {"ONS_VISITS_AUTOMATION": value})
    assert read == value.strip().lower()


def test_a_number_below_its_minimum_is_refused_with_the_variables_name() -> None:
    assert aws_retry_policy({"ONS_RETRY_DELAY_SECONDS": "0"}).delay == 0
    with pytest.raises(SettingError, match=r"ONS_RETRY_DELAY_SECONDS must be a number >= 0"):
        aws_retry_policy({"ONS_RETRY_DELAY_SECONDS": "-0.5"})
