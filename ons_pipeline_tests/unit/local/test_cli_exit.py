"""`ons-stack` leaves with `os._exit`: its output must still reach a pipe, with main's status."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def _ons_stack(*args: str) -> subprocess.CompletedProcess[str]:
    # Buffered as a user's shell has it (some CI machines set PYTHONUNBUFFERED).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-m", "ons_pipeline.local", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_piped_output_is_flushed_before_the_direct_exit(tmp_path: Path) -> None:
    # A pipe is block-buffered: without the flush before os._exit this line would be lost.
    done = _ons_stack("down", "--state-dir", str(tmp_path / "stack"))
    assert done.returncode == 0, done.stderr
    assert "No local stack recorded" in done.stdout


def test_the_exit_status_is_mains(tmp_path: Path) -> None:
    # `status` of a stack that is not running reports it and exits 1.
    done = _ons_stack("status", "--state-dir", str(tmp_path / "stack"))
    assert done.returncode == 1, (done.stdout, done.stderr)
