"""Write README's "Configuration" table from the settings table (`resources/settings.py`).

Run after changing a setting: `python scripts/settings_table.py` (`--check` only compares).
`ons_pipeline_tests/unit/resources/test_settings.py` fails while the two differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ons_pipeline.resources.settings import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
HEADING = "## Configuration\n"


def table_span(text: str) -> tuple[int, int]:
    """Start and end offsets of the Markdown table under README's Configuration heading."""
    section = text.index(HEADING)
    start = text.index("\n|", section) + 1
    end = text.find("\n\n", start)
    return start, (len(text) if end < 0 else end + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README is stale")
    args = parser.parse_args()
    text = README.read_text()
    start, end = table_span(text)
    updated = text[:start] + markdown_table() + text[end:]
    if updated == text:
        print("README's Configuration table is up to date")
        return 0
    if args.check:
        print("README's Configuration table differs: run python scripts/settings_table.py")
        return 1
    README.write_text(updated)
    print("README's Configuration table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
