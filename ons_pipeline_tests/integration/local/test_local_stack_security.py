"""The local stack answers only its own user: over the wire, without credentials, it refuses."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from ons_pipeline.local.stack import INFLUXDB_TOKEN_SECRET_NAME, write_private
from ons_pipeline.resources import defaults
from ons_pipeline_tests.integration.local.test_local_stack import basic_auth, raw_request

if TYPE_CHECKING:
    from ons_pipeline.local.stack import LocalStack

pytestmark = pytest.mark.integration

EVIL_ORIGIN = "http://evil.example"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def query_url(env: dict[str, str], statement: str) -> str:
    return f"{env['INFLUXDB_QUERY_URL']}/query?" + urllib.parse.urlencode({"q": statement})


def test_raw_influxd_refuses_anyone_without_the_stack_credentials(
    stack_env: dict[str, str],
) -> None:
    assert raw_request(query_url(stack_env, "SHOW DATABASES"))[0] == 401
    drop = query_url(stack_env, 'DROP DATABASE "generation_data"')
    assert raw_request(drop, method="POST")[0] == 401
    wrong = {**stack_env, "INFLUXDB_QUERY_PASSWORD": "guess"}
    assert raw_request(query_url(stack_env, "SHOW DATABASES"), headers=basic_auth(wrong))[0] == 401
    # The v2 token is not an influxd credential either.
    token = {"Authorization": f"Token {stack_env['INFLUXDB_TOKEN']}"}
    assert raw_request(query_url(stack_env, "SHOW DATABASES"), headers=token)[0] == 401

    status, body = raw_request(
        query_url(stack_env, "SHOW DATABASES"), headers=basic_auth(stack_env)
    )
    assert status == 200
    names = {row[0] for row in json.loads(body)["results"][0]["series"][0]["values"]}
    assert set(defaults.INFLUXDB_BUCKETS) <= names


def test_gateway_query_needs_the_token_and_never_passes_client_credentials_on(
    stack_env: dict[str, str],
) -> None:
    base = f"{stack_env['INFLUXDB_URL']}/query?"
    show = urllib.parse.urlencode({"q": "SHOW DATABASES"})
    assert raw_request(base + show)[0] == 401
    token = {"Authorization": f"Token {stack_env['INFLUXDB_TOKEN']}"}
    assert raw_request(base + show, headers=token)[0] == 200
    # u/p in the query string would make influxd log in as someone else: dropped.
    spoofed = urllib.parse.urlencode({"q": "SHOW DATABASES", "u": "nobody", "p": "x"})
    assert raw_request(base + spoofed, headers=token)[0] == 200


def test_local_lambda_runs_nothing_without_the_stack_secret(local_stack: LocalStack) -> None:
    url = (
        f"{local_stack.lambda_url}/2015-03-31/functions/"
        f"{defaults.LAMBDA_RUN_WORKER_FUNCTION}/invocations"
    )
    dry_run = {"X-Amz-Invocation-Type": "DryRun", "Content-Type": "application/json"}
    status, body = raw_request(url, data=b"{}", headers=dry_run, method="POST")
    assert status == 401
    assert defaults.LAMBDA_ENDPOINT_SECRET_HEADER in json.loads(body)["message"]
    wrong = {**dry_run, defaults.LAMBDA_ENDPOINT_SECRET_HEADER: "guess"}
    assert raw_request(url, data=b"{}", headers=wrong, method="POST")[0] == 401
    config_url = url.replace("/invocations", "/configuration")
    assert raw_request(config_url)[0] == 401

    secret = local_stack.env[defaults.LAMBDA_ENDPOINT_SECRET_ENV]
    right = {**dry_run, defaults.LAMBDA_ENDPOINT_SECRET_HEADER: secret}
    assert raw_request(url, data=b"{}", headers=right, method="POST")[0] == 204


def test_local_aws_endpoint_refuses_browsers_and_foreign_host_names(
    stack_env: dict[str, str],
) -> None:
    url = stack_env["AWS_ENDPOINT_URL"] + "/"
    preflight = {
        "Origin": EVIL_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-amz-target",
    }
    request = urllib.request.Request(url, headers=preflight, method="OPTIONS")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, headers = resp.status, resp.headers
    except urllib.error.HTTPError as err:
        status, headers = err.code, err.headers
    assert status == 403
    assert headers.get("Access-Control-Allow-Origin") is None

    # What a page would send next: GetSecretValue for the InfluxDB token.
    get_secret = {
        "Origin": EVIL_ORIGIN,
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "secretsmanager.GetSecretValue",
    }
    body = json.dumps({"SecretId": INFLUXDB_TOKEN_SECRET_NAME}).encode()
    status, answer = raw_request(url, data=body, headers=get_secret, method="POST")
    assert status == 403
    assert stack_env["INFLUXDB_TOKEN"].encode() not in answer

    # DNS rebinding: a page's own host name pointed at 127.0.0.1.
    port = urllib.parse.urlsplit(url).port
    status, _ = raw_request(url, headers={"Host": f"evil.example:{port}"})
    assert status == 403

    # The SDKs (no Origin, the loopback host) are served as before.
    secrets = boto3.client("secretsmanager", region_name=defaults.AWS_REGION)
    value = secrets.get_secret_value(SecretId=INFLUXDB_TOKEN_SECRET_NAME)["SecretString"]
    assert value == stack_env["INFLUXDB_TOKEN"]


def test_stack_files_are_its_owners_only(local_stack: LocalStack, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("old\n")
    env_file.chmod(0o644)
    local_stack.write_env_file(env_file)
    assert mode(env_file) == 0o600
    assert mode(local_stack.state_dir) == 0o700
    assert mode(local_stack.state_dir / "secrets.json") == 0o600
    stored = json.loads((local_stack.state_dir / "secrets.json").read_text())
    assert stored["influxdb_token"] == local_stack.token
    # Random per stack, not a constant anyone could read in the source.
    assert len(local_stack.token) >= 32


def test_write_private_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    path.chmod(0o666)
    write_private(path, "secret")
    assert mode(path) == 0o600
    assert path.read_text() == "secret"


def test_no_secret_on_a_command_line(local_stack: LocalStack) -> None:
    secrets = [local_stack.token, local_stack.influxd_password, local_stack.lambda_secret]
    for name, pid in local_stack.pids.items():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert cmdline, name
        for secret in secrets:
            assert secret not in cmdline, name
    gateway = Path(f"/proc/{local_stack.pids['gateway']}/cmdline").read_bytes()
    assert b"influx_gateway" in gateway
    assert b"--token" not in gateway
