"""A throwaway PostgreSQL server for the launcher's production-storage test."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ons_pipeline.local.processes import set_parent_death_signal

if TYPE_CHECKING:
    from collections.abc import Iterator

USER = "dagster"
PASSWORD = "ons-local-test-password"  # local fake credential for a throwaway server
PASSWORD_ENV = "ONS_TEST_PG_PASSWORD"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the server would not start."""


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    db_name: str


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise PostgresUnavailable(
            f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)"
        )
    return found


def _demote() -> tuple[int, int] | None:
    """initdb and postgres refuse to run as root: run them as `nobody` when we are root."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    initdb, postgres = _binary("initdb"), _binary("postgres")
    ids = _demote()
    root = Path(tempfile.mkdtemp(prefix="ons-pg-"))
    data = root / "data"
    pwfile = root / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if ids:
        for path in (root, pwfile):
            os.chown(path, *ids)
        os.chmod(root, 0o700)
    user_kwargs = {"user": ids[0], "group": ids[1]} if ids else {}
    port = _free_port()
    proc = None
    try:
        result = subprocess.run(
            [initdb, "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256"],
            capture_output=True,
            text=True,
            check=False,
            **user_kwargs,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {result.stderr[-2000:]}")
        log = (root / "postgres.log").open("wb")
        proc = subprocess.Popen(
            [
                postgres,
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(root),
                "-c",
                "fsync=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Dies with the test process even if it is killed outright (set after setuid).
            preexec_fn=set_parent_death_signal if sys.platform.startswith("linux") else None,
            **user_kwargs,
        )
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise PostgresUnavailable(
                    f"postgres did not start: {(root / 'postgres.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        time.sleep(0.3)  # accepting connections before recovery finishes answers "starting up"
        yield Postgres("127.0.0.1", port, USER, "postgres")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)
