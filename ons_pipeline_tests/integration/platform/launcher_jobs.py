"""A tiny code location the launcher tests run through the Lambda worker."""

import os
import time

from dagster import (
    Config,
    Definitions,
    MaterializeResult,
    OpExecutionContext,
    asset,
    define_asset_job,
    in_process_executor,
    job,
    op,
)

FAILURE_TEXT = "the Lambda worker raised this on purpose"


@asset
def launched_asset() -> MaterializeResult:
    """Materialised by the run worker inside the (local) Lambda; records its pid."""
    return MaterializeResult(metadata={"worker_pid": os.getpid()})


class SleepConfig(Config):
    seconds: float = 60.0


@op
def explode() -> None:
    raise RuntimeError(FAILURE_TEXT)


@op
def sleepy(context: OpExecutionContext, config: SleepConfig) -> None:
    context.log.info(f"sleeping {config.seconds}s")
    time.sleep(config.seconds)


@job
def failing_job() -> None:
    explode()


@job
def slow_job() -> None:
    sleepy()


@job(tags={"ons/launcher": "long_running"})
def long_job() -> None:
    sleepy()


ok_job = define_asset_job("ok_job", selection=[launched_asset])

defs = Definitions(
    assets=[launched_asset],
    jobs=[ok_job, failing_job, slow_job, long_job],
    executor=in_process_executor,
)
