"""The one table of settings: environment variable, default, type, what it does, secret or not.

Resources take their field defaults from it, `default_resources()` reads the environment
through it, and README's "Configuration" table is generated from it
(`scripts/settings_table.py`), so the three cannot drift. Values are parsed here, once, and a
bad one fails at load with the variable's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from dagster import EnvVar

from ons_pipeline.resources import defaults

if TYPE_CHECKING:
    from collections.abc import Mapping

_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot take."""


@dataclass(frozen=True)
class Setting:
    """One configurable value.

    `default` is what the code uses when the variable is unset (None: unset means "off" or
    "ask elsewhere"); `shown` is README's wording of it when the literal would mislead
    (values the local stack sets, production-only settings). Secrets never have a literal
    value in config: only `EnvVar`.
    """

    env: str
    default: str | int | float | bool | None
    description: str
    kind: type = str
    aliases: tuple[str, ...] = ()
    secret: bool = False
    shown: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.env, *self.aliases)

    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        return f"`{self.default}`"

    def parse(self, raw: str, variable: str) -> Any:
        """`raw` as this setting's type.

        Raises:
            SettingError: `raw` is not a value of the setting's type; names `variable`.
        """
        text = raw.strip()
        try:
            if self.kind is bool:
                if text.lower() in _TRUE:
                    return True
                if text.lower() in _FALSE:
                    return False
                raise ValueError("expected true or false")
            return self.kind(text)
        except ValueError as error:
            raise SettingError(
                f"environment variable {variable}={raw!r} is not a valid "
                f"{self.kind.__name__}: {error}"
            ) from error


_TOPIC_ARN: Final = defaults.local_alert_topic_arn()

SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(
        "AWS_ENDPOINT_URL",
        None,
        "every boto3 client",
        shown="unset in production; `http://127.0.0.1:5055` from `ons-stack up`",
    ),
    Setting(
        "AWS_REGION",
        defaults.AWS_REGION,
        "every boto3 client",
        aliases=("AWS_DEFAULT_REGION",),
    ),
    Setting(
        "AWS_ACCESS_KEY_ID",
        None,
        "AWS credentials chain (never in config)",
        secret=True,
        shown="`testing` locally; IAM role in production",
    ),
    Setting(
        "AWS_SECRET_ACCESS_KEY",
        None,
        "AWS credentials chain (never in config)",
        secret=True,
        shown="`testing` locally; IAM role in production",
    ),
    Setting("ONS_INGESTION_BUCKET", defaults.INGESTION_BUCKET, "ToteSys packets"),
    Setting(
        "ONS_PROCESSED_BUCKET",
        defaults.PROCESSED_BUCKET,
        "star schema, sales state and quarantine",
    ),
    Setting("ONS_EVENTS_BUCKET", defaults.EVENTS_BUCKET, "visit events"),
    Setting("ONS_CHECKPOINT_BUCKET", defaults.CHECKPOINT_BUCKET, "visit checkpoint"),
    Setting(
        "ONS_VISITS_AUTOMATION",
        "running",
        "default status of `visits_checkpoint_hourly` and `visit_events_sensor`",
        shown="`running`; `stopped` in the local stack's `.env`",
    ),
    Setting(
        "ONS_EVENTS_QUEUE_URL",
        None,
        "S3 ObjectCreated notifications for new visit events",
        shown=f"the local stack's `{defaults.EVENTS_QUEUE_NAME}` queue; unset: list the "
        "prefix every run",
    ),
    Setting(
        "ONS_ENERGY_QUEUE_URL",
        None,
        f"S3 ObjectCreated notifications for new `{defaults.ENERGY_PREFIX}` objects in the "
        "processed bucket",
        shown=f"the local stack's `{defaults.ENERGY_QUEUE_NAME}` queue; unset: the energy "
        "sensor lists every tick",
    ),
    Setting(
        "ONS_LAUNCHER_PAYLOAD_BUCKET", defaults.LAUNCHER_PAYLOAD_BUCKET, "run launcher payloads"
    ),
    Setting("ONS_SSM_PREFIX", defaults.SSM_PREFIX, "Parameter Store counters"),
    Setting("ONS_ALERT_TOPIC_ARN", _TOPIC_ARN, "run-failure alerts"),
    Setting(
        "TIMESTREAM_DATABASE",
        defaults.TIMESTREAM_DATABASE,
        "Timestream loader",
        aliases=("TIMESTREAM_DATABASE_NAME",),  # seed 000's spelling
    ),
    Setting(
        "TIMESTREAM_MAX_BATCH_SIZE",
        100,
        "Timestream records per `WriteRecords` call, 1 to 100 (the API's limit; a larger "
        "value fails at load)",
        kind=int,
    ),
    Setting(
        "INFLUXDB_URL",
        "http://127.0.0.1:8187",
        "InfluxDB writes",
        shown="`http://127.0.0.1:8187` (v2 gateway)",
    ),
    Setting(
        "INFLUXDB_QUERY_URL",
        None,
        "InfluxQL reads",
        shown="unset: `INFLUXDB_URL`; `http://127.0.0.1:8186` from `ons-stack up`",
    ),
    Setting(
        "INFLUXDB_QUERY_USERNAME",
        None,
        "InfluxQL reads from an influxd 1.x with auth on",
        shown="the local influxd's user, from `ons-stack up`; unset in production (the token "
        "is used)",
    ),
    Setting(
        "INFLUXDB_QUERY_PASSWORD",
        None,
        "that user's password",
        secret=True,
        shown="from `ons-stack up`; unset in production",
    ),
    Setting("INFLUXDB_ORG", defaults.INFLUXDB_ORG, "InfluxDB org"),
    Setting(
        "INFLUXDB_TOKEN",
        None,
        "InfluxDB token, directly (set this or `INFLUXDB_TOKEN_SECRET_NAME`)",
        secret=True,
        shown="the stack's random token; unset in production",
    ),
    Setting(
        "INFLUXDB_TOKEN_SECRET_NAME",
        "ons/influxdb/token",
        "Secrets Manager secret holding the InfluxDB token (production: read/write on the "
        "three buckets only, `deploy/README.md`)",
    ),
    Setting(
        "INFLUXDB_BUCKET",
        None,
        "write every dataset into one bucket",
        shown="unset: one bucket per dataset",
    ),
    Setting("GENERATION_TABLE_NAME", defaults.TIMESTREAM_TABLES[0], "Timestream table"),
    Setting("CONSUMPTION_TABLE_NAME", defaults.TIMESTREAM_TABLES[1], "Timestream table"),
    Setting("TRANSMISSION_TABLE_NAME", defaults.TIMESTREAM_TABLES[2], "Timestream table"),
    Setting(
        "MAX_BATCH_SIZE",
        5000,
        "InfluxDB lines per write (seed 001's name; Timestream has its own above)",
        kind=int,
    ),
    Setting(
        "INFLUXDB_GZIP_LEVEL",
        "auto",
        "InfluxDB write compression: `auto` sends plain bodies to loopback and "
        "private-address hosts (gzip there costs more CPU than the bytes it saves) and level "
        "1 to any other host (the link is the limit); or `0` (off) to `9`",
    ),
    Setting(
        "INFLUXDB_WRITE_CONCURRENCY",
        4,
        "InfluxDB writers posting batches at once; batches are built at most 8 ahead of them",
        kind=int,
    ),
    Setting(
        "MAX_RETRIES",
        3,
        "InfluxDB and Timestream retries (429/5xx/throttling only)",
        kind=int,
    ),
    Setting(
        "ENABLE_VALIDATION",
        True,
        "business rules on tags and unit (control characters, 2048 bytes); `false` never "
        "lets through what line protocol cannot carry (newline, carriage return, a backslash "
        "read as an escape): those rows are `invalid_tag` under every setting",
        kind=bool,
    ),
    Setting(
        "DROP_INVALID_RECORDS",
        True,
        "`false`: a file with any invalid row fails with the reasons",
        kind=bool,
    ),
    Setting(
        "ONS_QUERY_BREAKER_FAILURES",
        3,
        "query API: consecutive InfluxDB failures that open the breaker",
        kind=int,
    ),
    Setting(
        "ONS_QUERY_BREAKER_COOLDOWN_SECONDS",
        30.0,
        "query API: seconds an open breaker waits before one probe",
        kind=float,
        shown="`30`",
    ),
    Setting("ONS_QUERY_INFLUX_TIMEOUT_MS", 10000, "query API: InfluxDB read timeout", kind=int),
    Setting(
        "ONS_ENERGY_SINKS",
        "timestream,influxdb",
        "stores the energy loads write: `influxdb` after cutover, `timestream` to roll back",
    ),
    Setting(
        "ONS_MIGRATION_START_DATE", "2024-01-01", "first day of the migration's daily partitions"
    ),
    Setting(
        "ONS_MIGRATION_EXPORT",
        "unload",
        "how the migration exports a window: `unload` (UNLOAD to S3 as Parquet) or `query` "
        "(Query API pages)",
    ),
    Setting(
        "ONS_MIGRATION_EXPORT_BUCKET",
        None,
        "where UNLOAD writes a window's export",
        shown="unset: the processed bucket",
    ),
    Setting(
        "ONS_MIGRATION_EXPORT_PREFIX",
        "exports/timestream",
        "prefix UNLOAD writes a window's export under (deleted once the window is validated)",
    ),
    Setting(
        "ONS_LAMBDA_FUNCTION",
        defaults.LAMBDA_RUN_WORKER_FUNCTION,
        "run-worker function for `LambdaRunLauncher`",
    ),
    Setting(
        defaults.LAMBDA_ENDPOINT_URL_ENV,
        None,
        "Lambda API endpoint (local only)",
        shown="local stack's Lambda endpoint",
    ),
    Setting(
        defaults.LAMBDA_ENDPOINT_SECRET_ENV,
        None,
        "sent by the launcher to the local Lambda endpoint, which refuses (401) any call "
        "without it (local only)",
        secret=True,
        shown="the stack's random secret",
    ),
    Setting(
        "ONS_COMPUTE_LOG_BUCKET",
        None,
        "production instance",
        shown="see `deploy/README.md`",
    ),
    Setting(
        "ONS_ECS_RUN_TASK_DEFINITION",
        None,
        "production instance",
        shown="see `deploy/README.md`",
    ),
    Setting(
        "DAGSTER_PG_*",
        None,
        "production instance",
        secret=True,
        shown="see `deploy/README.md`",
    ),
    Setting(
        "ONS_STACK_AUTO_INSTALL",
        True,
        "let the local stack `apt-get install influxdb`",
        kind=bool,
        shown="`1`",
    ),
    Setting(
        "ONS_RETRY_DELAY_SECONDS",
        30.0,
        "first delay of the assets' retry policy (exponential, jitter); the tests set `0`",
        kind=float,
        shown="`30`",
    ),
    Setting(
        "ONS_RETRY_BACKOFF_SECONDS",
        None,
        "first retry delay inside the InfluxDB and Timestream resources; the tests set `0`",
        kind=float,
        shown="unset: 0.5 s InfluxDB, 0.2 s Timestream",
    ),
    Setting(
        "ONS_ALLOW_SKIP",
        None,
        "tests only: `1` skips (instead of failing) tests whose server (`influxd`, "
        "PostgreSQL) will not start",
    ),
    Setting(
        "ONS_QUERY_API_PORT",
        8188,
        "port `ons-stack up` starts the query API on (same as `--api-port`)",
        kind=int,
    ),
    Setting(
        "DAGSTER_HOME",
        None,
        "Dagster instance",
        shown="`.local/dagster_home` for the demo",
    ),
    Setting(
        "ONS_CODE_REPOSITORY_URL",
        None,
        "link each asset's code reference in the UI to the repository",
        shown="unset: local file links",
    ),
    Setting("ONS_CODE_BRANCH", "main", "branch of those links"),
)

BY_NAME: Final[dict[str, Setting]] = {
    name: setting for setting in SETTINGS for name in setting.names
}


def default(name: str) -> Any:
    """The setting's default (what a resource field defaults to)."""
    return BY_NAME[name].default


def _set_variable(setting: Setting, env: Mapping[str, str]) -> str | None:
    """The first of the setting's names the environment sets (non-empty), else None."""
    return next((name for name in setting.names if env.get(name)), None)


def read(name: str, env: Mapping[str, str] | None = None) -> Any:
    """The setting's value: from the environment (its name, then its aliases), else default.

    Raises:
        SettingError: the variable's value is not of the setting's type.
    """
    env = os.environ if env is None else env
    setting = BY_NAME[name]
    variable = _set_variable(setting, env)
    if variable is None:
        return setting.default
    return setting.parse(env[variable], variable)


def config(name: str, *, default: Any = None, env: Mapping[str, str] | None = None) -> Any:
    """The value a resource field is given for the setting, from this process's environment.

    A string setting (and every secret) that the environment sets becomes `EnvVar` of the
    variable, so run config shows the variable's name and never a secret's value; numbers
    and booleans are parsed here, at load, so a bad value fails with the variable's name.
    Unset, the setting's default (or `default`, for one that depends on another setting).

    Given `env` (the local stack's mapping, for in-process demo runs), every value is taken
    from it as a literal: that mapping is not this process's environment, so an `EnvVar`
    would resolve to the wrong thing.

    Raises:
        SettingError: a number or boolean variable holds something else.
    """
    setting = BY_NAME[name]
    source = os.environ if env is None else env
    variable = _set_variable(setting, source)
    if variable is None:
        return setting.default if default is None else default
    if env is None and (setting.secret or setting.kind is str):
        return EnvVar(variable)
    return setting.parse(source[variable], variable)


def markdown_table() -> str:
    """README's "Configuration" table (`scripts/settings_table.py` writes it there)."""
    rows = ["| variable | default (local) | used for |", "|---|---|---|"]
    for setting in SETTINGS:
        names = " (or ".join(f"`{name}`" for name in setting.names)
        names += ")" * len(setting.aliases)
        secret = " (a secret: only ever an `EnvVar`, never in config)" if setting.secret else ""
        rows.append(f"| {names} | {setting.shown_default()} | {setting.description}{secret} |")
    return "\n".join(rows) + "\n"
