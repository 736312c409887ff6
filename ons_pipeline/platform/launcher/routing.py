"""``RoutingRunLauncher``: Lambda for ordinary runs, a second launcher for long ones.

Lambda stops a run after 15 minutes, so jobs that can exceed it (long backfills, the first full
checkpoint) carry the tag ``ons/launcher: long_running`` and go to a launcher with no time
limit: the default launcher locally, dagster-aws's ``EcsRunLauncher`` in production. The tag
is on the run, so terminate and health checks reach the launcher that started it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import yaml
from dagster import Field, Permissive, Shape, StringSource
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.tags import RUN_WORKER_ID_TAG
from dagster._serdes import ConfigurableClass
from dagster._serdes.config_class import ConfigurableClassData

from ons_pipeline.platform.launcher import payload

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dagster._core.storage.dagster_run import DagsterRun


def _launcher_field(description: str) -> Field:
    return Field(
        Shape(
            {
                "module": Field(StringSource, description="Module of the launcher class."),
                "class": Field(StringSource, description="Name of the launcher class."),
                "config": Field(
                    Permissive(), is_required=False, default_value={}, description="Its config."
                ),
            }
        ),
        description=description,
    )


class RoutingRunLauncher(RunLauncher, ConfigurableClass):
    """Sends each run to one of two launchers by the run's ``ons/launcher`` tag."""

    def __init__(
        self,
        default: RunLauncher,
        long_running: RunLauncher,
        route_tag: str = payload.ROUTE_TAG,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self._inst_data = inst_data
        self.default = default
        self.long_running = long_running
        self.route_tag = route_tag
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "default": _launcher_field(
                "Launcher for every run not tagged long-running: LambdaRunLauncher."
            ),
            "long_running": _launcher_field(
                f"Launcher for runs tagged `<route_tag>: {payload.LONG_RUNNING}`: "
                "DefaultRunLauncher locally, dagster_aws.ecs.EcsRunLauncher in production."
            ),
            "route_tag": Field(
                StringSource,
                is_required=False,
                default_value=payload.ROUTE_TAG,
                description="Run tag whose value `long_running` selects the second launcher.",
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(
            default=_rehydrate(config_value["default"]),
            long_running=_rehydrate(config_value["long_running"]),
            route_tag=config_value.get("route_tag", payload.ROUTE_TAG),
            inst_data=inst_data,
        )

    def register_instance(self, instance: Any) -> None:
        super().register_instance(instance)
        self.default.register_instance(instance)
        self.long_running.register_instance(instance)

    def launcher_for(self, run: DagsterRun) -> RunLauncher:
        if run.tags.get(self.route_tag) == payload.LONG_RUNNING:
            return self.long_running
        return self.default

    def launch_run(self, context: LaunchRunContext) -> None:
        self.launcher_for(context.dagster_run).launch_run(context)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None:
            return False
        return self.launcher_for(run).terminate(run_id)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return (
            self.default.supports_check_run_worker_health
            or self.long_running.supports_check_run_worker_health
        )

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        launcher = self.launcher_for(run)
        if launcher.supports_check_run_worker_health:
            return launcher.check_run_worker_health(run)
        # Run monitoring fails any run whose status is not RUNNING; a launcher that cannot
        # tell still has its runs bounded by run monitoring's max_runtime_seconds.
        return CheckRunHealthResult(
            WorkerStatus.RUNNING,
            f"{type(launcher).__name__} does not report worker health",
            run_worker_id=run.tags.get(RUN_WORKER_ID_TAG),
        )

    def get_run_worker_debug_info(
        self, run: DagsterRun, include_container_logs: bool | None = True
    ) -> str | None:
        return self.launcher_for(run).get_run_worker_debug_info(run, include_container_logs)

    def dispose(self) -> None:
        self.default.dispose()
        self.long_running.dispose()

    def join(self, timeout: int = 30) -> None:
        self.default.join(timeout)
        self.long_running.join(timeout)


def _rehydrate(spec: Mapping[str, Any]) -> RunLauncher:
    data = ConfigurableClassData(
        spec["module"], spec["class"], yaml.dump(dict(spec.get("config") or {}))
    )
    return data.rehydrate(as_type=RunLauncher)
