"""The local stack: moto's server for AWS and a real influxd, on 127.0.0.1.

Everything the project runs against locally goes through the same boto3 and influxdb-client
code paths as production; only the endpoints differ (see ARCHITECTURE.md section 2).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess  # nosec B404  # argv lists only, never a shell
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ons_pipeline.local import influx_gateway
from ons_pipeline.resources import defaults
from ons_pipeline.resources.influxql import quote_identifier, quote_string

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

AWS_FAKE_CREDENTIAL = "testing"
INFLUXDB_TOKEN_SECRET_NAME = "ons/influxdb/token"  # nosec B105  # a secret's name, not a secret
ALERT_EMAIL = "admin@example.com"
# Energy series are kept seven years, as in production.
INFLUXDB_RETENTION_SECONDS = 7 * 365 * 24 * 3600
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
INSTALL_HINT = (
    "Debian/Ubuntu: sudo apt-get install influxdb; macOS: brew install influxdb (2.x is used "
    "directly)"
)
_STATE_FILE = "stack.json"
# Per-stack secrets (InfluxDB token, influxd password, Lambda endpoint secret), made once.
_SECRETS_FILE = "secrets.json"
_SECRET_NAMES = ("influxdb_token", "influxd_password", "lambda_secret")
# Recorded in stack.json: a stack started before its servers took these secrets is restarted.
_STATE_VERSION = 2
INFLUXD_USER = "ons-admin"  # influxd's admin (1.x user, or 2.x onboarding user)
# What each process's command line contains, so `down` never signals a recycled pid.
_CMDLINE_MARKERS = {
    "moto": "ons_pipeline.local.moto_server",
    "influxd": "influxd",
    "gateway": "influx_gateway",
    "lambda": "launcher.local_lambda",
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


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do; otherwise TIME_WAIT connections from a stopped stack count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _tail(path: Path, lines: int = 20) -> str:
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


def _pid_alive(pid: int) -> bool:
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


def _pid_cmdline(pid: int) -> str:
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():
        with contextlib.suppress(OSError):
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return ""
    result = subprocess.run(  # nosec B603 B607  # argv list, no shell; system tool on PATH
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout


def _set_parent_death_signal() -> None:
    """Linux only: children die with the test process even if it is killed outright."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status the URL answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # nosec B310  # http(s) URL from config
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return None


def announce_objects(s3: Any, sqs: Any, bucket: str, queue_name: str, prefix: str) -> str:
    """Send the bucket's ObjectCreated notifications under `prefix` to a queue; its URL.

    As deploy/terraform/sqs.tf does in AWS. Replaces the bucket's notification configuration.
    """
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                }
            ]
        },
    )
    return str(queue_url)


class LocalStack:
    """Starts, bootstraps and stops the local stack.

    In fixture mode (``detach=False``) the servers are children of this process and die with
    it. In CLI mode (``detach=True``) they outlive the command; their pids and ports are kept
    in ``state_dir`` so a later ``up`` reuses them and ``down`` stops them.
    """

    def __init__(
        self,
        state_dir: Path,
        moto_port: int | None = None,
        influx_port: int | None = None,
        gateway_port: int | None = None,
        detach: bool = False,
        token: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.detach = detach
        self._token_override = token
        self.token = token or ""
        self.influxd_password = ""  # nosec B105  # set from secrets.json at start
        self.lambda_secret = ""  # nosec B105  # set from secrets.json at start
        self.org = defaults.INFLUXDB_ORG
        self.region = defaults.AWS_REGION
        self._requested = {"moto": moto_port, "influx": influx_port, "gateway": gateway_port}
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.influx_major = 1
        self.reused = False
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.state_dir / _STATE_FILE

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['moto']}"

    @property
    def influxd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['influx']}"

    @property
    def influxdb_url(self) -> str:
        """What influxdb-client talks to: the gateway, or a 2.x influxd itself."""
        if self.influx_major >= 2:
            return self.influxd_url
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point the project at this stack."""
        if not self.ports:
            raise StackError("the local stack is not started")
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": AWS_FAKE_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": AWS_FAKE_CREDENTIAL,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "ONS_INGESTION_BUCKET": defaults.INGESTION_BUCKET,
            "ONS_PROCESSED_BUCKET": defaults.PROCESSED_BUCKET,
            "ONS_EVENTS_BUCKET": defaults.EVENTS_BUCKET,
            "ONS_EVENTS_QUEUE_URL": f"{self.moto_url}/123456789012/{defaults.EVENTS_QUEUE_NAME}",
            "ONS_ENERGY_QUEUE_URL": f"{self.moto_url}/123456789012/{defaults.ENERGY_QUEUE_NAME}",
            "ONS_CHECKPOINT_BUCKET": defaults.CHECKPOINT_BUCKET,
            "ONS_VISITS_AUTOMATION": "stopped",  # production default is running
            "ONS_LAUNCHER_PAYLOAD_BUCKET": defaults.LAUNCHER_PAYLOAD_BUCKET,
            "ONS_SSM_PREFIX": defaults.SSM_PREFIX,
            "ONS_ALERT_TOPIC_ARN": defaults.local_alert_topic_arn(self.region),
            "TIMESTREAM_DATABASE": defaults.TIMESTREAM_DATABASE,
            "INFLUXDB_URL": self.influxdb_url,
            "INFLUXDB_QUERY_URL": self.influxd_url,
            "INFLUXDB_ORG": self.org,
            "INFLUXDB_TOKEN": self.token,
            "INFLUXDB_TOKEN_SECRET_NAME": INFLUXDB_TOKEN_SECRET_NAME,
            **(
                {
                    "INFLUXDB_QUERY_USERNAME": INFLUXD_USER,
                    "INFLUXDB_QUERY_PASSWORD": self.influxd_password,
                }
                if self.influx_major < 2
                else {}
            ),
            **(
                {
                    defaults.LAMBDA_ENDPOINT_URL_ENV: self.lambda_url,
                    defaults.LAMBDA_ENDPOINT_SECRET_ENV: self.lambda_secret,
                }
                if "lambda" in self.ports
                else {}
            ),
        }

    def write_env_file(self, path: Path) -> Path:
        """Write ``env`` as a ``.env`` that ``dagster dev`` loads from the project root."""
        lines = [
            "# Generated by `ons-stack up`: points the project at the local stack.",
            "# Holds this stack's secrets (owner-only, 0600); regenerate rather than edit.",
            *(f"{key}={value}" for key, value in self.env.items()),
        ]
        return write_private(path, "\n".join(lines) + "\n")

    def start(self) -> LocalStack:
        """Start (or, detached, reuse) the servers and bootstrap them."""
        self._make_state_dir()
        self.log_dir.mkdir(mode=0o700, exist_ok=True)
        with self._lock():
            self._load_secrets()
            if self.detach and self._adopt_running():
                self.reused = True
            else:
                if self.detach:
                    self._stop_recorded()
                try:
                    self._start_processes()
                    self._start_lambda_endpoint()
                except BaseException:
                    self._stop_started()
                    raise
                if self.detach:
                    self._write_state()
        try:
            self.bootstrap()
        except BaseException:
            if not self.reused:
                self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the servers; in detached mode also those a previous ``up`` recorded."""
        with self._lock():
            self._stop_started()
            if self.detach:
                self._stop_recorded()
        self.ports = {}

    def status(self) -> dict[str, dict[str, Any]]:
        """Per process: pid, whether it is alive, and its URL, from the state file."""
        state = self.read_state()
        if state is None:
            return {}
        urls = self._urls(state["ports"])
        return {
            name: {
                "pid": pid,
                "alive": self._recorded_alive(name, pid),
                "url": urls.get(name, ""),
            }
            for name, pid in state["pids"].items()
        }

    def read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def _make_state_dir(self) -> None:
        """The state dir holds the stack's secrets and data: its owner's only (0700)."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)

    def _load_secrets(self) -> None:
        """This stack's random secrets, kept 0600 in the state dir.

        Made on first start, then reused: influxd keeps its users, clients keep the token.
        """
        path = self.state_dir / _SECRETS_FILE
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        values = {name: stored.get(name) or secrets.token_urlsafe(32) for name in _SECRET_NAMES}
        if self._token_override:
            values["influxdb_token"] = self._token_override
        if values != stored:
            write_private(path, json.dumps(values, indent=2) + "\n")
        self.token = values["influxdb_token"]
        self.influxd_password = values["influxd_password"]
        self.lambda_secret = values["lambda_secret"]

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise concurrent ``up``/``down`` on one state dir."""
        self._make_state_dir()
        with (self.state_dir / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _urls(ports: dict[str, int]) -> dict[str, str]:
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        return {
            "moto": urls["moto"],
            "influxd": urls["influx"],
            "gateway": urls.get("gateway", ""),
            "lambda": urls.get("lambda", ""),
        }

    def _recorded_alive(self, name: str, pid: int) -> bool:
        return _pid_alive(pid) and _CMDLINE_MARKERS[name] in _pid_cmdline(pid)

    def _adopt_running(self) -> bool:
        state = self.read_state()
        if not state:
            return False
        if not all(self._recorded_alive(n, p) for n, p in state["pids"].items()):
            return False
        if "lambda" not in state["ports"] or state.get("version") != _STATE_VERSION:
            return False  # recorded by an older stack (no Lambda endpoint, or no auth)
        urls = self._urls(state["ports"])
        if _http_status(urls["moto"]) is None or _http_status(f"{urls['influxd']}/ping") != 204:
            return False
        if state["influx_major"] < 2 and _http_status(f"{urls['gateway']}/ready") != 200:
            return False
        self.ports = dict(state["ports"])
        self.pids = dict(state["pids"])
        self.influx_major = state["influx_major"]
        return True

    def _write_state(self) -> None:
        """Ports and pids only (secrets stay in secrets.json); owner-only all the same."""
        state = {
            "version": _STATE_VERSION,
            "ports": self.ports,
            "pids": self.pids,
            "influx_major": self.influx_major,
        }
        write_private(self.state_file, json.dumps(state, indent=2) + "\n")

    def _pick_port(self, name: str) -> int:
        requested = self._requested.get(name)
        if requested is None:
            return free_port()
        if _port_in_use(requested):
            raise StackError(
                f"port {requested} for {name} is already in use; pass --{name}-port or stop "
                "whatever listens there"
            )
        return requested

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        on_linux = sys.platform.startswith("linux")
        proc = subprocess.Popen(  # nosec B603  # argv list, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.state_dir,
            start_new_session=True,
            preexec_fn=None if self.detach or not on_linux else _set_parent_death_signal,  # noqa: PLW1509
        )
        self._procs[name] = proc
        self.pids[name] = proc.pid

    def _wait_ready(self, name: str, url: str, ready: tuple[int, ...] | None) -> None:
        proc = self._procs[name]
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if proc.poll() is not None:
                raise StackError(
                    f"{name} exited with code {proc.returncode} while starting; its output:\n"
                    f"{_tail(self.log_dir / f'{name}.log')}"
                )
            status = _http_status(url, timeout=1.0)
            if status is not None and (ready is None or status in ready):
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{name} did not answer {url} within {START_TIMEOUT_SECONDS:.0f}s; its "
                    f"output:\n{_tail(self.log_dir / f'{name}.log')}"
                )
            time.sleep(0.05)

    def _start_processes(self) -> None:
        influxd = ensure_influxd()
        self.influx_major = influxd_major_version(influxd)
        self.ports = {"moto": self._pick_port("moto"), "influx": self._pick_port("influx")}
        if self.influx_major < 2:
            self.ports["gateway"] = self._pick_port("gateway")
            self.ports["rpc"] = free_port()
        # botocore lists no Timestream-write endpoint in eu-west-2, so moto refuses the region
        # unless told to accept it.
        moto_env = {
            **os.environ,
            "MOTO_ALLOW_NONEXISTENT_REGION": "true",
            "MOTO_DISABLE_GLOBAL_CORS": "true",  # moto_server.py enforces it as well
            "ONS_STACK_MOTO_URL": self.moto_url,  # read by moto_server.py
        }
        self._spawn(
            "moto",
            [
                sys.executable,
                "-m",
                "ons_pipeline.local.moto_server",
                "-H",
                "127.0.0.1",
                "-p",
                str(self.ports["moto"]),
            ],
            env=moto_env,
        )
        # influxd reads INFLUXDB_*/INFLUXD_* as config overrides: the project's own
        # INFLUXDB_URL/TOKEN must not leak into it.
        influx_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "INFLUXD_"))
        }
        self._spawn("influxd", self._influxd_argv(influxd), env=influx_env)
        self._wait_ready("moto", self.moto_url, None)
        self._wait_ready("influxd", f"{self.influxd_url}/ping", (204,))
        if self.influx_major >= 2:
            self._setup_influx2()
            return
        self._ensure_influxd_admin()
        self._spawn(
            "gateway",
            [
                sys.executable,
                "-m",
                "ons_pipeline.local.influx_gateway",
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                str(self.ports["gateway"]),
                "--upstream",
                self.influxd_url,
                "--org",
                self.org,
            ],
            env={
                **os.environ,
                # Secrets through the environment: a command line is visible to `ps`.
                influx_gateway.TOKEN_ENV: self.token,
                influx_gateway.UPSTREAM_USERNAME_ENV: INFLUXD_USER,
                influx_gateway.UPSTREAM_PASSWORD_ENV: self.influxd_password,
            },
        )
        self._wait_ready("gateway", f"{self.influxdb_url}/ready", (200,))

    @property
    def lambda_url(self) -> str:
        """The local endpoint that speaks the Lambda Invoke API and runs the real handler."""
        return f"http://127.0.0.1:{self.ports['lambda']}"

    def _start_lambda_endpoint(self) -> None:
        self.ports["lambda"] = self._pick_port("lambda")
        # The handler and its run workers reach moto through the stack's own environment.
        env = {**os.environ, **self.env}  # holds the endpoint's secret (never on argv)
        argv = [sys.executable, "-m", "ons_pipeline.platform.launcher.local_lambda"]
        self._spawn("lambda", [*argv, "--port", str(self.ports["lambda"])], env=env)
        self._wait_ready("lambda", self.lambda_url, (200,))

    def _influxd_argv(self, influxd: str) -> list[str]:
        influx_dir = self.state_dir / "influxdb"
        if self.influx_major >= 2:
            return [
                influxd,
                "--http-bind-address",
                f"127.0.0.1:{self.ports['influx']}",
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
        config = self.state_dir / "influxdb.conf"
        config.write_text(self._influxd1_config(influx_dir))
        return [influxd, "run", "-config", str(config)]

    def _influxd1_config(self, influx_dir: Path) -> str:
        def q(value: object) -> str:
            return json.dumps(str(value))

        return f"""\
# Generated by ons_pipeline.local.stack for the local stack; rewritten on every start.
reporting-disabled = true
bind-address = {q(f"127.0.0.1:{self.ports['rpc']}")}

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
  bind-address = {q(f"127.0.0.1:{self.ports['influx']}")}
  auth-enabled = true
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
"""

    def _influxd_query(self, statement: str, authenticated: bool = True) -> tuple[int, str]:
        """POST one InfluxQL statement to influxd 1.x: (HTTP status, error text or "")."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if authenticated:
            basic = f"{INFLUXD_USER}:{self.influxd_password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
        body = urllib.parse.urlencode({"q": statement}).encode()
        request = urllib.request.Request(
            f"{self.influxd_url}/query", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:  # nosec B310  # http(s) URL from config
                result = json.load(resp)["results"][0]
                return resp.status, str(result.get("error") or "")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def _ensure_influxd_admin(self) -> None:
        """Create influxd's admin user on first start, then check the stack can log in.

        influxd runs with auth on; while it has no admin it accepts that one statement
        unauthenticated.
        """
        status, error = self._influxd_query("SHOW USERS")
        if status == 200 and not error:
            return
        create = (
            f"CREATE USER {quote_identifier(INFLUXD_USER)} WITH PASSWORD "
            f"{quote_string(self.influxd_password)} WITH ALL PRIVILEGES"
        )
        self._influxd_query(create, authenticated=False)
        status, error = self._influxd_query("SHOW USERS")
        if status != 200 or error:
            raise StackError(
                f"influxd at {self.influxd_url} refuses this stack's credentials ({status} "
                f"{error.strip()}); its users were made by another stack: delete "
                f"{self.state_dir / 'influxdb'} to start its data afresh"
            )

    def _setup_influx2(self) -> None:
        """One-time onboarding of a 2.x influxd with the local org and token."""
        setup_url = f"{self.influxd_url}/api/v2/setup"
        with urllib.request.urlopen(setup_url, timeout=10) as resp:  # nosec B310  # http(s) URL from config
            if not json.load(resp).get("allowed"):
                return
        body = json.dumps(
            {
                "username": INFLUXD_USER,
                "password": self.influxd_password,
                "org": self.org,
                "bucket": defaults.INFLUXDB_BUCKETS[0],
                "token": self.token,
                "retentionPeriodSeconds": INFLUXDB_RETENTION_SECONDS,
            }
        ).encode()
        req = urllib.request.Request(
            setup_url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30):  # nosec B310  # http(s) URL from config
            pass

    def _stop_started(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        for name, proc in self._procs.items():
            try:
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            self.pids.pop(name, None)
        self._procs = {}
        for log in self._logs:
            log.close()
        self._logs = []

    def _stop_recorded(self) -> None:
        state = self.read_state()
        if state is None:
            return
        targets = [(n, p) for n, p in state["pids"].items() if self._recorded_alive(n, p)]
        for _, pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for _, pid in targets:
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def bootstrap(self) -> None:
        """Create every resource the project expects; safe to repeat, never overwrites."""
        self._bootstrap_aws()
        self._bootstrap_influx()

    def boto3_client(self, service: str) -> Any:
        """A boto3 client for the stack's moto server, independent of the environment."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name=self.region,
            aws_access_key_id=AWS_FAKE_CREDENTIAL,
            aws_secret_access_key=AWS_FAKE_CREDENTIAL,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def _bootstrap_aws(self) -> None:
        s3 = self.boto3_client("s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in defaults.ALL_BUCKETS:
            if bucket in existing:
                continue
            try:
                s3.create_bucket(
                    Bucket=bucket,
                    CreateBucketConfiguration={"LocationConstraint": self.region},
                )
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass

        # New visit-event files and processed energy objects are announced on queues, so
        # incremental runs and the energy sensor skip the listing.
        sqs = self.boto3_client("sqs")
        announce_objects(
            s3, sqs, defaults.EVENTS_BUCKET, defaults.EVENTS_QUEUE_NAME, defaults.EVENTS_PREFIX
        )
        announce_objects(
            s3, sqs, defaults.PROCESSED_BUCKET, defaults.ENERGY_QUEUE_NAME, defaults.ENERGY_PREFIX
        )

        sns = self.boto3_client("sns")
        topic_arn = sns.create_topic(Name=defaults.ALERT_TOPIC_NAME)["TopicArn"]
        subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
        if not any(s["Endpoint"] == ALERT_EMAIL for s in subscriptions):
            sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=ALERT_EMAIL)

        timestream = self.boto3_client("timestream-write")
        with contextlib.suppress(timestream.exceptions.ConflictException):
            timestream.create_database(DatabaseName=defaults.TIMESTREAM_DATABASE)
        for table in defaults.TIMESTREAM_TABLES:
            with contextlib.suppress(timestream.exceptions.ConflictException):
                timestream.create_table(DatabaseName=defaults.TIMESTREAM_DATABASE, TableName=table)

        secrets = self.boto3_client("secretsmanager")
        with contextlib.suppress(secrets.exceptions.ResourceExistsException):
            secrets.create_secret(Name=INFLUXDB_TOKEN_SECRET_NAME, SecretString=self.token)

        ssm = self.boto3_client("ssm")
        parameters = [
            f"{defaults.SSM_PREFIX}/sales/last_packet/{table}" for table in defaults.SOURCE_TABLES
        ] + [
            f"{defaults.SSM_PREFIX}/sales/output_sequence/{table}" for table in defaults.STAR_TABLES
        ]
        for name in parameters:
            with contextlib.suppress(ssm.exceptions.ParameterAlreadyExists):
                ssm.put_parameter(Name=name, Value="0", Type="String", Overwrite=False)

    def _bootstrap_influx(self) -> None:
        from influxdb_client import BucketRetentionRules, InfluxDBClient

        with InfluxDBClient(url=self.influxdb_url, token=self.token, org=self.org) as client:
            buckets = client.buckets_api()
            for name in defaults.INFLUXDB_BUCKETS:
                if buckets.find_bucket_by_name(name) is None:
                    buckets.create_bucket(
                        bucket_name=name,
                        org=self.org,
                        retention_rules=BucketRetentionRules(
                            type="expire", every_seconds=INFLUXDB_RETENTION_SECONDS
                        ),
                    )
