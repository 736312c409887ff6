"""The three groups stand side by side: none imports another.

What two groups share (a resource, the queue client, a name) lives in `ons_pipeline.resources`
or `ons_pipeline.platform`; a group reaching into another's modules would tie their releases
together and hide the shared part where nobody looks for it.
"""

from __future__ import annotations

from ons_pipeline_tests.unit.local.test_boundaries import PACKAGE, ROOT, _imports

GROUPS = ("sales", "energy", "visits")


def _cross_group_imports(group: str) -> list[str]:
    others = [f"ons_pipeline.{other}" for other in GROUPS if other != group]
    return sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (PACKAGE / group).rglob("*.py")
        for name in _imports(path)
        if any(name == other or name.startswith(f"{other}.") for other in others)
    )


def test_no_group_module_imports_another_group() -> None:
    assert all(list((PACKAGE / group).rglob("*.py")) for group in GROUPS)  # the scan sees them
    found = [line for group in GROUPS for line in _cross_group_imports(group)]
    assert found == []
