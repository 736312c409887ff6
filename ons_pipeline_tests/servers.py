"""When a server a test needs will not start: fail, unless skipping was asked for.

A skipped integration suite looks green. So the default is to fail, whatever CI sets
(`CI=1`, `CI=True` or nothing); a laptop without `influxd` or PostgreSQL opts in with
``ONS_ALLOW_SKIP=1``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from collections.abc import Mapping

ALLOW_SKIP_ENV = "ONS_ALLOW_SKIP"


def skip_allowed(environ: Mapping[str, str] = os.environ) -> bool:
    """True only when `ONS_ALLOW_SKIP` is exactly "1" (anything else fails)."""
    return environ.get(ALLOW_SKIP_ENV, "").strip() == "1"


def server_unavailable(reason: str, environ: Mapping[str, str] = os.environ) -> NoReturn:
    """Fail the test with the reason, or skip it when the environment allows skipping."""
    if skip_allowed(environ):
        pytest.skip(f"{reason} ({ALLOW_SKIP_ENV}=1)")
    pytest.fail(
        f"{reason}. Install what is missing, or set {ALLOW_SKIP_ENV}=1 to skip instead.",
        pytrace=False,
    )
