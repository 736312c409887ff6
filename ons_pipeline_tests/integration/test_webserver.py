"""The code location served by a real dagster-webserver, read back over GraphQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ons_pipeline.definitions import defs
from ons_pipeline.local.stack import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

STARTUP_DEADLINE_S = 90.0
REPO_ROOT = Path(__file__).resolve().parents[2]

LOCATION_STATUS_QUERY = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""
JOB_QUERY = """
query ($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { name }
    ... on PythonError { message }
  }
}
"""
SENSOR_QUERY = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { name targets { pipelineName } sensorState { status } }
    ... on PythonError { message }
  }
}
"""
ASSET_NODES_QUERY = "{ assetNodes { assetKey { path } groupName } }"
REPOSITORY_QUERY = """
{
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        sensors { name }
        schedules { name }
      }
    }
    ... on PythonError { message }
  }
}
"""


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def graphql(base_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture(scope="module")
def webserver(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A dagster-webserver on a free port serving the code location; its base URL."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("")
    log_path = home / "webserver.log"
    port = free_port()
    env = {
        **os.environ,
        **local_stack.env,
        "DAGSTER_HOME": str(home),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    env.pop("AWS_PROFILE", None)
    executable = Path(sys.executable).with_name("dagster-webserver")
    command = [str(executable), "-m", "ons_pipeline.definitions", "-h", "127.0.0.1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "-p", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while _get(f"{base_url}/server_info") != 200:
            if process.poll() is not None:
                pytest.fail(
                    f"dagster-webserver exited with {process.returncode}:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"dagster-webserver not up after {STARTUP_DEADLINE_S:.0f}s:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.25)
        # /server_info answers before the code location has finished loading.
        while True:
            entries = graphql(base_url, LOCATION_STATUS_QUERY)["workspaceOrError"]
            entries = entries["locationEntries"]
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"code location not loaded after {STARTUP_DEADLINE_S:.0f}s: {entries}")
            time.sleep(0.25)
        errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
        assert not errors, errors
        yield base_url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)


def test_every_asset_and_group_is_served(webserver: str) -> None:
    nodes = graphql(webserver, ASSET_NODES_QUERY)["assetNodes"]
    served = {tuple(node["assetKey"]["path"]): node["groupName"] for node in nodes}
    graph = defs.resolve_asset_graph()
    expected = {tuple(key.path): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert expected  # the definitions must have assets for this test to mean anything
    assert served == expected


def test_jobs_and_sensors_are_served(webserver: str) -> None:
    data = graphql(webserver, REPOSITORY_QUERY)["repositoriesOrError"]
    assert data["__typename"] == "RepositoryConnection", data
    (repository,) = data["nodes"]
    jobs = {job["name"] for job in repository["jobs"]}
    assert {job.name for job in defs.resolve_all_job_defs()} <= jobs
    assert "sales_star_schema_job" in jobs
    sensors = sorted(sensor["name"] for sensor in repository["sensors"])
    assert sensors == [
        "energy_object_sensor",
        "run_failure_alert",
        "run_success_metrics",
        "totesys_packet_sensor",
        "visit_events_sensor",
    ]
    assert sorted(schedule["name"] for schedule in repository["schedules"]) == [
        "energy_blue_green_daily",
        "visits_checkpoint_hourly",
    ]

    repo_selector = {
        "repositoryName": repository["name"],
        "repositoryLocationName": repository["location"]["name"],
    }
    job = graphql(
        webserver,
        JOB_QUERY,
        {"selector": {**repo_selector, "pipelineName": "sales_star_schema_job"}},
    )["pipelineOrError"]
    assert job == {"__typename": "Pipeline", "name": "sales_star_schema_job"}

    packet_sensor = graphql(
        webserver,
        SENSOR_QUERY,
        {"selector": {**repo_selector, "sensorName": "totesys_packet_sensor"}},
    )["sensorOrError"]
    assert packet_sensor["__typename"] == "Sensor", packet_sensor
    assert packet_sensor["targets"] == [{"pipelineName": "sales_star_schema_job"}]
    assert packet_sensor["sensorState"]["status"] == "STOPPED"

    alert_sensor = graphql(
        webserver,
        SENSOR_QUERY,
        {"selector": {**repo_selector, "sensorName": "run_failure_alert"}},
    )["sensorOrError"]
    assert alert_sensor["__typename"] == "Sensor", alert_sensor
    # Alerting must be on without anyone remembering to switch it on.
    assert alert_sensor["sensorState"]["status"] == "RUNNING"


UI_ASSETS_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    description
    owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    tags { key value }
    internalFreshnessPolicy { ... on TimeWindowFreshnessPolicy { failWindowSeconds } }
    metadataEntries {
      label
      ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
      ... on CodeReferencesMetadataEntry {
        codeReferences { ... on LocalFileCodeReference { filePath lineNumber } }
      }
    }
  }
}
"""
PRESETS_QUERY = """
query ($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { presets { name runConfigYaml } }
  }
}
"""
# Types a reader knows; pandas' own names (`int64[pyarrow]`, `object`) are not among them.
READABLE_TYPE = r"int64|float64|string|date|time|decimal\(\d+,\d+\)|timestamp\[\w+(, [\w/]+)?\]"


def test_the_ui_explains_each_asset(webserver: str) -> None:
    """What the asset pages show: columns with types and descriptions, owners, tags, code."""
    import re

    nodes = graphql(webserver, UI_ASSETS_QUERY)["assetNodes"]
    assert {node["groupName"] for node in nodes} == {
        "sales",
        "energy",
        "energy_migration",
        "visits",
    }
    fresh = {}
    for node in nodes:
        name = "/".join(node["assetKey"]["path"])
        entries = {entry["label"]: entry for entry in node["metadataEntries"]}
        columns = entries["dagster/column_schema"]["schema"]["columns"]
        assert columns, name
        for column in columns:
            assert column["description"], (name, column)
            assert re.fullmatch(READABLE_TYPE, column["type"]), (name, column)
        assert node["description"], name
        assert node["owners"] == [{"team": "ons-data-platform"}], name
        tags = {tag["key"]: tag["value"] for tag in node["tags"]}
        assert tags["ons/pipeline"] == node["groupName"], name
        references = entries["dagster/code_references"]["codeReferences"]
        assert any(ref["filePath"].endswith(".py") for ref in references), name
        if node["internalFreshnessPolicy"]:
            fresh[name] = node["internalFreshnessPolicy"]["failWindowSeconds"]
    fact = next(n for n in nodes if n["assetKey"]["path"] == ["fact_sales_order"])
    types = {
        c["name"]: c["type"]
        for e in fact["metadataEntries"]
        if e["label"] == "dagster/column_schema"
        for c in e["schema"]["columns"]
    }
    assert types["unit_price"] == "decimal(10,2)"
    assert types["created_date"] == "date"
    assert types["created_time"] == "time"
    # Seeds: visits hourly, energy daily.
    assert fresh["visit_events_checkpoint"] <= 3 * 3600
    assert 24 * 3600 <= fresh["energy/influxdb_points"] <= 48 * 3600
    assert 24 * 3600 <= fresh["energy/timestream_records"] <= 48 * 3600


def test_the_sales_launchpad_opens_with_a_packets_example(webserver: str) -> None:
    import yaml

    data = graphql(webserver, REPOSITORY_QUERY)["repositoriesOrError"]
    (repository,) = data["nodes"]
    assert repository["location"]["name"] == "ons_pipeline.definitions"
    selector = {
        "repositoryName": repository["name"],
        "repositoryLocationName": repository["location"]["name"],
        "pipelineName": "sales_packets_job",
    }
    job = graphql(webserver, PRESETS_QUERY, {"selector": selector})["pipelineOrError"]
    assert job["__typename"] == "Pipeline", job
    (preset,) = job["presets"]
    config = yaml.safe_load(preset["runConfigYaml"])
    packets = config["ops"]["totesys_raw"]["config"]["packets"]
    assert packets == [{"table": "sales_order", "id": 1}]
