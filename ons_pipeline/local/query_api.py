"""The energy query API on 127.0.0.1: a real uvicorn serving `ons_pipeline.energy.api:app`.

`ons-stack up` (and so `ons-stack demo`) starts it beside the stack, with the stack's
environment, and records its pid in the state directory; `ons-stack down` stops it. Tests
start it on a free port with `start_api` and stop it with `ApiProcess.stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess  # nosec B404  # argv lists only, never a shell
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

STATE_FILE: Final = "query_api.json"
APP: Final = "ons_pipeline.energy.api:app"
START_TIMEOUT_SECONDS: Final = 60.0


class ApiError(RuntimeError):
    """The API server could not be started."""


@dataclass
class ApiProcess:
    pid: int
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL after 10 s."""
        if not _is_api(self.pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return
            if self.proc is None and not _is_api(self.pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)


def _is_api(pid: int) -> bool:
    """The pid is alive and runs our app (a recycled pid is never signalled)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return sys.platform != "linux"
    return APP.encode() in cmdline and b"<defunct>" not in cmdline


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # nosec B310  # http(s) URL from config
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_api(
    env: dict[str, str],
    port: int,
    log_path: Path,
    state_dir: Path | None = None,
    *,
    reuse: bool = True,
) -> ApiProcess:
    """Start uvicorn on 127.0.0.1:`port` with `env` and wait until it answers.

    With `state_dir`, a healthy server recorded there on `port` is reused (when `reuse`),
    any other recorded one is stopped, and the new one is recorded.

    Raises:
        ApiError: it exited or did not answer within a minute (its log tail included).
    """
    if state_dir is not None:
        recorded = read_recorded(state_dir)
        if reuse and recorded and recorded.port == port and is_running(recorded):
            return recorded
        stop_recorded(state_dir)  # another port, dead, or pointed at a stack now gone
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # nosec B603  # argv list, no shell
            [*argv, "--no-access-log", "--log-level", "warning"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    api = ApiProcess(proc.pid, port, proc)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _healthy(api.url):
        if proc.poll() is not None or time.monotonic() > deadline:
            api.stop()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ApiError(f"the query API did not start on port {port}; its log:\n{tail}")
        time.sleep(0.1)
    if state_dir is not None:
        (state_dir / STATE_FILE).write_text(json.dumps({"pid": api.pid, "port": port}))
    return api


def is_running(api: ApiProcess) -> bool:
    return _is_api(api.pid) and _healthy(api.url)


def read_recorded(state_dir: Path) -> ApiProcess | None:
    try:
        state = json.loads((state_dir / STATE_FILE).read_text())
        return ApiProcess(int(state["pid"]), int(state["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stop_recorded(state_dir: Path) -> bool:
    """Stop the server `start_api` recorded in `state_dir`; True when one was recorded."""
    recorded = read_recorded(state_dir)
    if recorded is None:
        return False
    recorded.stop()
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return True
