"""Static checks of the package's security posture: bandit, suppressions, what ships."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$")
# `# nosec B603 B607  # why`: the checks it silences, then the reason.
NOSEC_WITH_REASON = re.compile(r"^ (B\d{3})( B\d{3})*  # \S.*$")


def test_bandit_finds_nothing_unsuppressed() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bandit",
            "-c",
            str(ROOT / "pyproject.toml"),
            "-r",
            str(ROOT / "ons_pipeline"),
            "-f",
            "json",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    report = json.loads(result.stdout)
    findings = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in report["results"]
    ]
    assert findings == [], "\n".join(findings)
    assert report["errors"] == []
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really scanned the package


def test_every_suppression_names_its_check_and_reason() -> None:
    bare = []
    for path in sorted((ROOT / "ons_pipeline").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = NOSEC.search(line)
            if match and not NOSEC_WITH_REASON.match(match.group("rest")):
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert bare == []


def test_the_local_stack_is_an_extra_not_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    assert "moto" not in runtime
    assert "flask" not in runtime
    assert any(dep.startswith("moto[server]") for dep in project["optional-dependencies"]["local"])
    # README's `pip install -e '.[dev]'` still brings the local stack.
    assert "ons_pipeline[local]" in project["optional-dependencies"]["dev"]


def test_the_code_location_does_not_import_the_local_stack() -> None:
    probe = (
        "import sys, ons_pipeline.definitions; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'moto', 'flask', 'werkzeug'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_lambda_image_installs_no_extra() -> None:
    dockerfile = (ROOT / "deploy" / "lambda" / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs
    assert all("[" not in line for line in installs), installs


def test_pipeline_token_reads_and_writes_the_energy_buckets_only() -> None:
    spec = importlib.util.spec_from_file_location(
        "influxdb_scoped_token", ROOT / "deploy" / "influxdb_scoped_token.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ids = {"generation_data": "b1", "consumption_data": "b2", "transmission_data": "b3"}
    permissions = module.scoped_permissions("org1", ids)
    got = {(p.action, p.resource.type, p.resource.id, p.resource.org_id) for p in permissions}
    assert got == {
        (action, "buckets", bucket_id, "org1")
        for bucket_id in ids.values()
        for action in ("read", "write")
    }
