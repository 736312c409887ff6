"""deploy/: Terraform that parses and resolves, no public bucket, and an instance that loads."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from ons_pipeline.platform.launcher import RoutingRunLauncher, payload
from ons_pipeline.resources import defaults

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
TF_FILES = sorted((DEPLOY / "terraform").glob("*.tf"))

_RESOURCE_REF = re.compile(r"(?<![\w.])((?:aws|random)_[a-z0-9_]+)\.([A-Za-z0-9_-]+)")
_DATA_REF = re.compile(r"(?<![\w.])data\.([a-z0-9_]+)\.([A-Za-z0-9_-]+)")
_VAR_REF = re.compile(r"(?<![\w.])var\.([A-Za-z0-9_]+)")
_LOCAL_REF = re.compile(r"(?<![\w.])local\.([A-Za-z0-9_]+)")
_BUCKET_KEY_REF = re.compile(r"aws_s3_bucket\.this\[\"([a-z_]+)\"\]")


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [str(key), *_strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


@pytest.fixture(scope="module")
def terraform() -> dict[str, Any]:
    """Everything the .tf files declare, and every string they contain."""
    assert TF_FILES, "deploy/terraform has no .tf files"
    declared: dict[str, Any] = {
        "resource": {},
        "data": {},
        "variable": {},
        "locals": {},
        "output": set(),
        "strings": [],
    }
    for path in TF_FILES:
        with path.open() as handle:
            parsed = hcl2.load(handle)
        declared["strings"].extend(_strings(parsed))
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    declared["resource"][(kind, name)] = body
        for block in parsed.get("data", []):
            for kind, named in block.items():
                for name, body in named.items():
                    declared["data"][(kind, name)] = body
        for block in parsed.get("variable", []):
            declared["variable"].update(block)
        for block in parsed.get("locals", []):
            declared["locals"].update(block)
        for block in parsed.get("output", []):
            declared["output"].update(block)
    return declared


def _default(terraform: dict[str, Any], name: str) -> Any:
    return terraform["variable"][name]["default"]


def test_every_reference_resolves(terraform: dict[str, Any]) -> None:
    text = "\n".join(terraform["strings"])
    without_data = _DATA_REF.sub("", text)
    missing = sorted(
        {f"{k}.{n}" for k, n in _RESOURCE_REF.findall(without_data)}
        - {f"{k}.{n}" for k, n in terraform["resource"]}
    )
    missing += sorted(
        {f"data.{k}.{n}" for k, n in _DATA_REF.findall(text)}
        - {f"data.{k}.{n}" for k, n in terraform["data"]}
    )
    missing += sorted(
        {f"var.{v}" for v in _VAR_REF.findall(text)} - {f"var.{v}" for v in terraform["variable"]}
    )
    missing += sorted(
        {f"local.{v}" for v in _LOCAL_REF.findall(text)}
        - {f"local.{v}" for v in terraform["locals"]}
    )
    bucket_roles = set(_default(terraform, "buckets"))
    missing += sorted(
        f'aws_s3_bucket.this["{role}"]'
        for role in set(_BUCKET_KEY_REF.findall(text)) - bucket_roles
    )
    assert not missing, f"references to nothing declared: {missing}"
    unused = sorted(set(terraform["variable"]) - set(_VAR_REF.findall(text)))
    assert not unused, f"variables never used: {unused}"


def test_no_bucket_is_public_and_all_are_encrypted(terraform: dict[str, Any]) -> None:
    resources = terraform["resource"]
    buckets = {name for kind, name in resources if kind == "aws_s3_bucket"}
    assert buckets == {"this"}
    for kind in (
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_ownership_controls",
    ):
        covering = [body for (k, _), body in resources.items() if k == kind]
        assert [body["for_each"] for body in covering] == ["${aws_s3_bucket.this}"], kind
    (block,) = [b for (k, _), b in resources.items() if k == "aws_s3_bucket_public_access_block"]
    for setting in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[setting] is True, setting
    assert "BucketOwnerEnforced" in str(resources[("aws_s3_bucket_ownership_controls", "this")])
    for (kind, name), body in resources.items():
        assert "public-read" not in str(body), f"{kind}.{name} grants a public ACL"
        if kind == "aws_s3_bucket_acl":
            pytest.fail(f"{kind}.{name}: ACLs are disabled (BucketOwnerEnforced)")
    for (kind, name), body in terraform["data"].items():
        if kind != "aws_iam_policy_document":
            continue
        for statement in body.get("statement", []):
            principals = str(statement.get("principals", ""))
            if "'*'" in principals or '"*"' in principals:
                assert statement.get("effect") == "Deny", f"data.{kind}.{name} allows everyone"


def test_names_are_the_code_defaults(terraform: dict[str, Any]) -> None:
    buckets = _default(terraform, "buckets")
    assert sorted(buckets.values()) == sorted(defaults.ALL_BUCKETS)
    assert buckets["launcher_payload"] == defaults.LAUNCHER_PAYLOAD_BUCKET
    assert _default(terraform, "region") == defaults.AWS_REGION
    assert _default(terraform, "ssm_prefix") == defaults.SSM_PREFIX
    assert _default(terraform, "alert_topic_name") == defaults.ALERT_TOPIC_NAME
    assert _default(terraform, "timestream_database") == defaults.TIMESTREAM_DATABASE
    assert tuple(_default(terraform, "timestream_tables")) == defaults.TIMESTREAM_TABLES
    assert _default(terraform, "influxdb_org") == defaults.INFLUXDB_ORG
    assert _default(terraform, "run_worker_function_name") == defaults.LAMBDA_RUN_WORKER_FUNCTION
    assert _default(terraform, "run_worker_timeout_seconds") == defaults.LAMBDA_TIMEOUT_SECONDS
    assert _default(terraform, "run_worker_timeout_seconds") <= 900


def test_the_stack_has_what_the_issue_lists(terraform: dict[str, Any]) -> None:
    kinds = {kind for kind, _ in terraform["resource"]}
    for kind in (
        "aws_ssm_parameter",
        "aws_sns_topic",
        "aws_sns_topic_subscription",
        "aws_lambda_function",
        "aws_iam_role",
        "aws_iam_role_policy",
        "aws_timestreamwrite_database",
        "aws_timestreamwrite_table",
        "aws_timestreaminfluxdb_db_instance",
        "aws_secretsmanager_secret",
        "aws_cloudwatch_metric_alarm",
        "aws_lambda_function_event_invoke_config",
    ):
        assert kind in kinds, kind
    resources = terraform["resource"]
    assert resources[("aws_sns_topic_subscription", "admin_email")]["protocol"] == "email"
    function = resources[("aws_lambda_function", "run_worker")]
    assert function["package_type"] == "Image"
    retries = resources[("aws_lambda_function_event_invoke_config", "run_worker")]
    assert retries["maximum_retry_attempts"] == 0
    alarms = str([b for (k, _), b in resources.items() if k == "aws_cloudwatch_metric_alarm"])
    alarms += str(terraform["locals"]["custom_alarms"])
    for needle in ("Errors", "Duration", "600000", "Throttles", "FailedBatches"):
        assert needle in alarms, needle
    influx = resources[("aws_timestreaminfluxdb_db_instance", "energy")]
    assert influx["publicly_accessible"] is False


def test_run_worker_policy_is_least_privilege(terraform: dict[str, Any]) -> None:
    policy = terraform["data"][("aws_iam_policy_document", "run_worker")]
    for statement in policy["statement"]:
        actions = statement["actions"]
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement["sid"]
        if statement["resources"] == ["*"]:
            assert set(actions) <= {"timestream:DescribeEndpoints", "cloudwatch:PutMetricData"}


def test_instance_config_loads_with_the_routing_launcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import ConfigurableClassData

    text = (DEPLOY / "dagster.yaml").read_text()
    (tmp_path / "dagster.yaml").write_text(text)
    dagster_instance_config(str(tmp_path))  # raises on a schema error

    config = yaml.safe_load(text)
    assert list(payload.literal_secrets(config)) == []
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert "postgres" in config["storage"]

    monkeypatch.setenv("ONS_LAMBDA_FUNCTION", defaults.LAMBDA_RUN_WORKER_FUNCTION)
    monkeypatch.setenv("AWS_REGION", defaults.AWS_REGION)
    monkeypatch.setenv("ONS_LAUNCHER_PAYLOAD_BUCKET", defaults.LAUNCHER_PAYLOAD_BUCKET)
    monkeypatch.setenv("ONS_ECS_RUN_TASK_DEFINITION", "arn:aws:ecs:eu-west-2:1:task-definition/r:1")
    block = config["run_launcher"]
    long_running = block["config"]["long_running"]
    # EcsRunLauncher calls ECS when built: check its config offline, build the rest.
    from dagster._config import process_config
    from dagster_aws.ecs import EcsRunLauncher

    assert long_running["class"] == "EcsRunLauncher"
    checked = process_config(EcsRunLauncher.config_type(), long_running["config"])
    assert checked.success, checked.errors
    offline = {
        **block["config"],
        "long_running": {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"},
    }
    launcher = ConfigurableClassData(block["module"], block["class"], yaml.dump(offline)).rehydrate(
        as_type=RoutingRunLauncher
    )
    assert type(launcher.default).__name__ == "LambdaRunLauncher"
    assert launcher.default.function == defaults.LAMBDA_RUN_WORKER_FUNCTION
    assert launcher.supports_check_run_worker_health


def test_local_instance_config_uses_the_stack_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import ConfigurableClassData

    text = (DEPLOY / "dagster.local.yaml").read_text()
    (tmp_path / "dagster.yaml").write_text(text)
    dagster_instance_config(str(tmp_path))
    monkeypatch.setenv(defaults.LAMBDA_ENDPOINT_URL_ENV, "http://127.0.0.1:9")
    block = yaml.safe_load(text)["run_launcher"]
    launcher = ConfigurableClassData(
        block["module"], block["class"], yaml.dump(block["config"])
    ).rehydrate(as_type=RoutingRunLauncher)
    assert launcher.default.endpoint_url == "http://127.0.0.1:9"


def test_lambda_image_points_at_the_handler() -> None:
    dockerfile = (DEPLOY / "lambda" / "Dockerfile").read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.1[1-3]\b", dockerfile, re.M)
    (handler,) = re.findall(r'^CMD \["([\w.]+)"\]', dockerfile, re.M)
    module, _, attr = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attr))


def _arrival_queue(terraform: dict[str, Any], name: str) -> dict[str, Any]:
    """One queue of `local.arrival_queues`, checked to be wired to its bucket and prefix."""
    queue = terraform["locals"]["arrival_queues"][name]
    notification = terraform["resource"][("aws_s3_bucket_notification", "arrivals")]
    assert notification["for_each"] == "${local.arrival_queues}"
    assert "aws_s3_bucket.this[each.value.bucket]" in notification["bucket"]
    (target,) = notification["queue"]
    assert "aws_sqs_queue.arrivals[each.key].arn" in target["queue_arn"]
    assert target["filter_prefix"] == "${each.value.prefix}"
    policy = terraform["data"][("aws_iam_policy_document", "arrivals")]
    (statement,) = policy["statement"]
    assert statement["actions"] == ["sqs:SendMessage"]
    assert "aws_s3_bucket.this[each.value.bucket].arn" in str(statement["condition"])
    return queue


def test_visit_event_notifications_reach_the_queue_the_code_reads(
    terraform: dict[str, Any],
) -> None:
    queue = _arrival_queue(terraform, "visits")
    assert queue["name"] == defaults.EVENTS_QUEUE_NAME
    assert queue["visibility_timeout_seconds"] >= defaults.LAMBDA_TIMEOUT_SECONDS
    assert queue["prefix"] == defaults.EVENTS_PREFIX
    assert queue["bucket"] == "events"
    assert any('aws_sqs_queue.arrivals["visits"].url' in s for s in terraform["strings"])


def test_run_worker_may_make_exactly_the_queue_calls_the_checkpoint_makes(
    terraform: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every SQS call of an incremental and of a listing run, as IAM actions, and no more."""
    from moto import mock_aws

    from ons_pipeline.resources import NotificationQueueResource
    from ons_pipeline.visits.notifications import (
        receive_notifications,
        settle_covered_notifications,
    )

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    calls: set[str] = set()
    with mock_aws():
        sqs = NotificationQueueResource(region_name="eu-west-2")
        client = sqs.get_client()
        client.meta.events.register(
            "before-call.sqs", lambda event_name, **_: calls.add(event_name.rsplit(".", 1)[-1])
        )
        queue = client.create_queue(QueueName="q")["QueueUrl"]
        for body in ("old", "new"):
            client.send_message(QueueUrl=queue, MessageBody=body)
        calls.clear()
        # A listing run: none covered (all returned), then all covered (all deleted).
        assert settle_covered_notifications(sqs, queue, "logs/", 0, clock_margin_s=0) == (0, 2)
        assert settle_covered_notifications(sqs, queue, "logs/", 2e9, clock_margin_s=0) == (2, 0)
        # An incremental run.
        client.send_message(QueueUrl=queue, MessageBody="newer")
        calls.discard("SendMessage")  # S3's call, not the run's
        sqs.delete(queue, receive_notifications(sqs, queue, "logs/").receipts)
        assert not client.receive_message(QueueUrl=queue).get("Messages")
    used = {f"sqs:{call.removesuffix('Batch')}" for call in calls}
    (statement,) = [
        s
        for s in terraform["data"][("aws_iam_policy_document", "run_worker")]["statement"]
        if s["sid"] == "VisitEventNotifications"
    ]
    assert used == set(statement["actions"])


def test_energy_objects_are_announced_on_the_queue_the_sensor_reads(
    terraform: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The processed bucket's `dataset=` objects reach the queue; the daemon may make exactly
    the SQS calls a sensor tick makes."""
    from moto import mock_aws

    from ons_pipeline.energy.sensors import receive_announcements
    from ons_pipeline.resources import NotificationQueueResource

    queue = _arrival_queue(terraform, "energy")
    assert queue["name"] == defaults.ENERGY_QUEUE_NAME
    assert queue["prefix"] == defaults.ENERGY_PREFIX
    assert queue["bucket"] == "processed"
    assert "energy_queue_url" in terraform["output"]

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    calls: set[str] = set()
    with mock_aws():
        sqs = NotificationQueueResource(region_name="eu-west-2")
        client = sqs.get_client()
        url = client.create_queue(QueueName="q")["QueueUrl"]
        client.send_message(QueueUrl=url, MessageBody='{"bucket": "b", "key": "dataset=x"}')
        client.meta.events.register(
            "before-call.sqs", lambda event_name, **_: calls.add(event_name.rsplit(".", 1)[-1])
        )
        sqs.delete(url, receive_announcements(sqs, url).receipts)
    used = {f"sqs:{call.removesuffix('Batch')}" for call in calls}
    (statement,) = [
        s
        for s in terraform["data"][("aws_iam_policy_document", "launcher")]["statement"]
        if s["sid"] == "EnergyObjectNotifications"
    ]
    assert used == set(statement["actions"])
