"""The local stack: moto's server for AWS and a real influxd, on 127.0.0.1.

Everything the project runs against locally goes through the same boto3 and influxdb-client
code paths as production; only the endpoints differ (see ARCHITECTURE.md section 2).
`LocalStack` decides what runs where and keeps its state (ports, pids, secrets); starting and
stopping the processes is `processes.py`'s, creating what the project expects in them is
`bootstrap.py`'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ons_pipeline.local import bootstrap, influx_gateway
from ons_pipeline.local.bootstrap import (
    AWS_FAKE_CREDENTIAL,
    INFLUXD_USER,
    INFLUXDB_RETENTION_SECONDS,
    INFLUXDB_TOKEN_SECRET_NAME,
    announce_objects,
)
from ons_pipeline.local.processes import (
    StackError,
    Supervisor,
    ensure_influxd,
    free_port,
    http_status,
    influxd_argv,
    influxd_major_version,
    port_in_use,
    recorded_alive,
    stop_pids,
    write_private,
)
from ons_pipeline.resources import defaults

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

# The names the tests and benchmarks import from here.
__all__ = [
    "INFLUXDB_RETENTION_SECONDS",
    "INFLUXDB_TOKEN_SECRET_NAME",
    "LocalStack",
    "StackError",
    "announce_objects",
    "free_port",
    "write_private",
]

_STATE_FILE = "stack.json"
# Per-stack secrets (InfluxDB token, influxd password, Lambda endpoint secret), made once.
_SECRETS_FILE = "secrets.json"
_SECRET_NAMES = ("influxdb_token", "influxd_password", "lambda_secret")
# Recorded in stack.json: a stack recorded by an older version is restarted, not reused
# (2: servers take the per-stack secrets; 3: the Lambda endpoint runs from local/).
_STATE_VERSION = 3


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
        self.influx_major = 1
        self.reused = False
        self.processes = Supervisor(self.log_dir, self.state_dir, detach)

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
    def pids(self) -> dict[str, int]:
        """Each process's pid: those this stack started, or adopted from a running one."""
        return self.processes.pids

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
                    self.processes.stop()
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
            self.processes.stop()
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
                "alive": recorded_alive(name, pid),
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

    def _adopt_running(self) -> bool:
        state = self.read_state()
        if not state:
            return False
        if not all(recorded_alive(n, p) for n, p in state["pids"].items()):
            return False
        if "lambda" not in state["ports"] or state.get("version") != _STATE_VERSION:
            return False  # recorded by an older stack (see _STATE_VERSION)
        urls = self._urls(state["ports"])
        if http_status(urls["moto"]) is None or http_status(f"{urls['influxd']}/ping") != 204:
            return False
        if state["influx_major"] < 2 and http_status(f"{urls['gateway']}/ready") != 200:
            return False
        self.ports = dict(state["ports"])
        self.processes.pids = dict(state["pids"])
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
        if port_in_use(requested):
            raise StackError(
                f"port {requested} for {name} is already in use; pass --{name}-port or stop "
                "whatever listens there"
            )
        return requested

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
        self.processes.spawn(
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
        argv = influxd_argv(influxd, self.influx_major, self.state_dir, self.ports)
        self.processes.spawn("influxd", argv, env=influx_env)
        self.processes.wait_ready("moto", self.moto_url, None)
        self.processes.wait_ready("influxd", f"{self.influxd_url}/ping", (204,))
        if self.influx_major >= 2:
            bootstrap.setup_influx2(self.influxd_url, self.influxd_password, self.org, self.token)
            return
        bootstrap.ensure_influxd_admin(self.influxd_url, self.influxd_password, self.state_dir)
        self.processes.spawn(
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
        self.processes.wait_ready("gateway", f"{self.influxdb_url}/ready", (200,))

    @property
    def lambda_url(self) -> str:
        """The local endpoint that speaks the Lambda Invoke API and runs the real handler."""
        return f"http://127.0.0.1:{self.ports['lambda']}"

    def _start_lambda_endpoint(self) -> None:
        self.ports["lambda"] = self._pick_port("lambda")
        # The handler and its run workers reach moto through the stack's own environment.
        env = {**os.environ, **self.env}  # holds the endpoint's secret (never on argv)
        argv = [sys.executable, "-m", "ons_pipeline.local.lambda_endpoint"]
        self.processes.spawn("lambda", [*argv, "--port", str(self.ports["lambda"])], env=env)
        self.processes.wait_ready("lambda", self.lambda_url, (200,))

    def bootstrap(self) -> None:
        """Create every resource the project expects; safe to repeat, never overwrites."""
        bootstrap.bootstrap_aws(self.moto_url, self.region, self.token)
        bootstrap.bootstrap_influx(self.influxdb_url, self.token, self.org)

    def boto3_client(self, service: str) -> Any:
        """A boto3 client for the stack's moto server, independent of the environment."""
        return bootstrap.boto3_client(self.moto_url, self.region, service)

    def _stop_recorded(self) -> None:
        """Stop the processes a previous detached ``up`` recorded, and forget them."""
        state = self.read_state()
        if state is None:
            return
        stop_pids(state["pids"])
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()
