"""Named commit points where the fault suite kills or pauses a run (a no-op in production).

`ONS_FAULT_KILL_AT=<name>` SIGKILLs the process when it reaches `<name>`, as a crashed
worker would die. `ONS_FAULT_PAUSE_AT=<name>` with `ONS_FAULT_PAUSE_FILE=<path>` creates
`<path>.reached` and waits until `<path>` exists, so a test can interleave two runs
deterministically. Neither variable is set outside `ons_pipeline_tests/faults/`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ons_pipeline.resources import settings


def commit_point(name: str) -> None:
    """Mark a commit point; does nothing unless a fault variable names it."""
    if settings.read("ONS_FAULT_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if settings.read("ONS_FAULT_PAUSE_AT") == name:
        release = Path(settings.read("ONS_FAULT_PAUSE_FILE"))
        Path(f"{release}.reached").touch()
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
