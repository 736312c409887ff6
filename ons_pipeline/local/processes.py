"""Process supervision for the local stack: start, watch and stop its servers.

The servers are moto, influxd, the InfluxDB v2 gateway and the Lambda endpoint. What to run
and on which ports is the stack's business (`stack.py`); what to create in the running
servers is the bootstrap's (`bootstrap.py`). Nothing here knows AWS or InfluxDB APIs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess  # nosec B404  # argv lists only, never a shell
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
INSTALL_HINT = (
    "Debian/Ubuntu: sudo apt-get install influxdb; macOS: brew install influxdb (2.x is used "
    "directly)"
)
# What each process's command line contains, so `down` never signals a recycled pid. The
# Lambda endpoint also answers to its module's former name (stacks started before the move).
CMDLINE_MARKERS: dict[str, tuple[str, ...]] = {
    "moto": ("ons_pipeline.local.moto_server",),
    "influxd": ("influxd",),
    "gateway": ("influx_gateway",),
    "lambda": ("local.lambda_endpoint", "launcher.local_lambda"),
}


class StackError(RuntimeError):
    """The local stack could not start, stop or bootstrap; the message says why."""


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` readable by its owner only (0600), whatever was there before."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an existing file keeps its mode on open
        handle.write(text)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do; otherwise TIME_WAIT connections from a stopped stack count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def ensure_influxd() -> str:
    """The path of ``influxd``, installing Debian's package when allowed and possible."""
    found = shutil.which("influxd")
    if found:
        return found
    can_install = (
        Path("/etc/debian_version").exists()
        and shutil.which("apt-get") is not None
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
        and os.environ.get("ONS_STACK_AUTO_INSTALL") != "0"
    )
    if not can_install:
        raise StackError(f"influxd is not installed. Install it: {INSTALL_HINT}")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "influxdb"]
    result = subprocess.run(install, env=apt_env, capture_output=True, text=True, check=False)  # nosec B603  # argv list, no shell
    if result.returncode != 0:
        # The package lists may be stale or absent (fresh containers): refresh only then.
        subprocess.run(  # nosec B603 B607  # argv list, no shell; system tool on PATH
            ["apt-get", "update"], env=apt_env, capture_output=True, text=True, check=False
        )
        result = subprocess.run(install, env=apt_env, capture_output=True, text=True, check=False)  # nosec B603  # argv list, no shell
    found = shutil.which("influxd") or (
        "/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None
    )
    if result.returncode != 0 or not found:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise StackError(f"could not install influxdb ({INSTALL_HINT}):\n{tail}")
    return found


def influxd_major_version(influxd: str) -> int:
    """1 or 2, from ``influxd version``."""
    result = subprocess.run(  # nosec B603  # argv list, no shell
        [influxd, "version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(r"\bv?(\d+)\.\d+", result.stdout + result.stderr)
    if not match:
        raise StackError(f"cannot tell the version of {influxd}: {result.stdout}{result.stderr}")
    return int(match.group(1))


def pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own exited child, so it does not linger as a zombie.
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        with contextlib.suppress(OSError, IndexError):
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def pid_cmdline(pid: int) -> str:
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():
        with contextlib.suppress(OSError):
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return ""
    result = subprocess.run(  # nosec B603 B607  # argv list, no shell; system tool on PATH
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout


def set_parent_death_signal() -> None:
    """Linux only: children die with the test process even if it is killed outright."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status the URL answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # nosec B310  # http(s) URL from config
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return None


def recorded_alive(name: str, pid: int) -> bool:
    """Whether `pid` is still the stack's `name` process (alive, and not a recycled pid)."""
    cmdline = pid_cmdline(pid) if pid_alive(pid) else ""
    return any(marker in cmdline for marker in CMDLINE_MARKERS[name])


def stop_pids(pids: dict[str, int]) -> None:
    """SIGTERM the recorded processes still alive, SIGKILL those that outlive the timeout."""
    targets = [(n, p) for n, p in pids.items() if recorded_alive(n, p)]
    for _, pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for _, pid in targets:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Supervisor:
    """The processes one stack started: spawned with their logs, waited for, stopped.

    Attached (``detach=False``) children die with this process (Linux); detached ones outlive
    it and are found again through the pids the stack records.
    """

    def __init__(self, log_dir: Path, cwd: Path, detach: bool) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        self.detach = detach
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pids: dict[str, int] = {}
        self._logs: list[IO[bytes]] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start `name` in its own session, its output appended to ``<log_dir>/<name>.log``."""
        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        on_linux = sys.platform.startswith("linux")
        proc = subprocess.Popen(  # nosec B603  # argv list, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=None if self.detach or not on_linux else set_parent_death_signal,  # noqa: PLW1509
        )
        self.procs[name] = proc
        self.pids[name] = proc.pid

    def wait_ready(self, name: str, url: str, ready: tuple[int, ...] | None) -> None:
        """Wait until `url` answers (with one of `ready`); fail with the log if `name` exits."""
        proc = self.procs[name]
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if proc.poll() is not None:
                raise StackError(
                    f"{name} exited with code {proc.returncode} while starting; its output:\n"
                    f"{tail(self.log_dir / f'{name}.log')}"
                )
            status = http_status(url, timeout=1.0)
            if status is not None and (ready is None or status in ready):
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{name} did not answer {url} within {START_TIMEOUT_SECONDS:.0f}s; its "
                    f"output:\n{tail(self.log_dir / f'{name}.log')}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate what this supervisor started (kill what does not stop) and close logs."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            self.pids.pop(name, None)
        self.procs = {}
        for log in self._logs:
            log.close()
        self._logs = []


def influxd_argv(influxd: str, major: int, data_dir: Path, ports: dict[str, int]) -> list[str]:
    """How to run `influxd` on the stack's ports with its data under `data_dir`.

    A 1.x server gets a config file written beside its data (rewritten on every start).
    """
    influx_dir = data_dir / "influxdb"
    if major >= 2:
        return [
            influxd,
            "--http-bind-address",
            f"127.0.0.1:{ports['influx']}",
            "--bolt-path",
            str(influx_dir / "influxd.bolt"),
            "--engine-path",
            str(influx_dir / "engine"),
            "--sqlite-path",
            str(influx_dir / "influxd.sqlite"),
            "--reporting-disabled",
            "--log-level",
            "error",
        ]
    config = data_dir / "influxdb.conf"
    config.write_text(_influxd1_config(influx_dir, ports))
    return [influxd, "run", "-config", str(config)]


def _influxd1_config(influx_dir: Path, ports: dict[str, int]) -> str:
    def q(value: object) -> str:
        return json.dumps(str(value))

    return f"""\
# Generated by ons_pipeline.local for the local stack; rewritten on every start.
reporting-disabled = true
bind-address = {q(f"127.0.0.1:{ports['rpc']}")}

[meta]
  dir = {q(influx_dir / "meta")}
  logging-enabled = false

[data]
  dir = {q(influx_dir / "data")}
  wal-dir = {q(influx_dir / "wal")}
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = {q(f"127.0.0.1:{ports['influx']}")}
  auth-enabled = true
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
"""
