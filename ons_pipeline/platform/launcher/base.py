"""What every launcher of this package shares: being built from `dagster.yaml`."""

from __future__ import annotations

from dagster._core.launcher import RunLauncher
from dagster._serdes import ConfigurableClass, ConfigurableClassData


class ConfigurableRunLauncher(RunLauncher, ConfigurableClass):
    """A run launcher that keeps the instance config it was built from (`inst_data`)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data
