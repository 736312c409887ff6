"""Every `dagster` and `ons-stack` command in README.md's bash blocks runs as written.

README is parsed at test time, so a command someone adds is run too. Each command runs as a
subprocess in a scratch project directory (the repository's `.venv`, `deploy/` and project
files linked in) with the environment README describes: its own `set -a; . ./.env` and
`export` lines, and `DAGSTER_HOME` under that directory. A detached local stack on free ports
is recorded in the scratch directory's `.local/stack`, so `ons-stack up` and `ons-stack demo`
reuse it instead of binding README's fixed ports.

What cannot run in CI is named in `NOT_RUN`, the one list of exceptions, with the reason.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ons_pipeline.local.stack import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ons_pipeline.local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# The project's command-line programs: README commands that start with one of these are run.
PROJECT_CLIS = ("dagster", "dagster-webserver", "dagster-daemon", "ons-stack")

# Commands (by their leading words, `.venv/bin/` and `VAR=value` prefixes dropped) that are
# not run, and why. Anything else README's bash blocks name is either run or, when it is not
# one of PROJECT_CLIS, reported as a shell step.
NOT_RUN: dict[str, str] = {
    "dagster dev": "a long-running UI server; test_webserver.py and scripts/ui_check.py drive it",
    "dagster-webserver": "a long-running server (production start-up)",
    "dagster-daemon": "a long-running daemon (production start-up)",
    "curl": "calls README's fixed local ports; this test's stack listens on free ports",
    "docker": "needs a Docker daemon and an image registry",
    "terraform": "needs AWS credentials and an account",
    "python3 -m venv": "creating the virtualenv is CI's own first step",
    "pip": "installing the project is CI's own first step",
    "python -m pytest": "the test suite itself",
}
# Run after every other command: it stops the stack the others use.
RUN_LAST = ("ons-stack down",)
COMMAND_TIMEOUT_S = 1200


@dataclass(frozen=True)
class Command:
    text: str  # as README writes it (one `&&` segment, continuation lines joined)
    prelude: tuple[str, ...]  # the block's environment lines before it
    block: int

    @property
    def words(self) -> list[str]:
        words = shlex.split(self.text, comments=True)
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            words.pop(0)  # VAR=value prefixes
        if words:
            words[0] = words[0].removeprefix(".venv/bin/")
        return words

    def matches(self, prefix: str) -> bool:
        wanted = prefix.split()
        return self.words[: len(wanted)] == wanted


def readme_commands(text: str) -> list[Command]:
    """The commands of README's ```bash blocks, in order, each `&&` segment on its own."""
    commands: list[Command] = []
    for index, block in enumerate(re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)):
        prelude: list[str] = []
        for line in block.replace("\\\n", " ").splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith(("set -a", "export ")):
                prelude.append(stripped)
                continue
            commands.extend(
                Command(segment.strip(), tuple(prelude), index)
                for segment in re.split(r"\s&&\s", stripped)
            )
    return commands


def why_not_run(command: Command) -> str | None:
    for prefix, reason in NOT_RUN.items():
        if command.matches(prefix):
            return reason
    if not command.words or command.words[0] not in PROJECT_CLIS:
        return "a shell step, not a project command"
    return None


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch project directory whose `.local/stack` holds a running detached stack."""
    from ons_pipeline.local.stack import LocalStack, StackError

    directory = tmp_path_factory.mktemp("readme_project")
    for name in ("ons_pipeline", "deploy", "workspace.yaml", "pyproject.toml"):
        (directory / name).symlink_to(ROOT / name)
    (directory / ".venv").symlink_to(Path(sys.prefix))
    stack: LocalStack = LocalStack(directory / ".local" / "stack", detach=True)
    try:
        stack.start()
    except StackError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"local stack could not start: {err}", pytrace=False)
        pytest.skip(f"local stack could not start: {err}")
    try:
        yield directory
    finally:
        from ons_pipeline.local import query_api

        query_api.stop_recorded(stack.state_dir)
        stack.stop()


def _run(command: Command, project: Path, api_port: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "AWS_"))}
    env["PATH"] = f"{project / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["ONS_QUERY_API_PORT"] = str(api_port)  # `ons-stack up` starts the API: not on 8188
    script = "\n".join(["set -e", *command.prelude, command.text])
    return subprocess.run(
        ["bash", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def _wait_for_runs(home: Path, deadline_s: float = 300.0) -> list[tuple[str, str]]:
    """(job, status) of every run in the instance once none is in progress (queued is idle)."""
    from dagster import DagsterInstance, DagsterRunStatus

    unfinished = {
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
    }
    deadline = time.monotonic() + deadline_s
    with DagsterInstance.from_config(str(home)) as instance:
        while True:
            runs = instance.get_runs()
            if not any(run.status in unfinished for run in runs) or time.monotonic() > deadline:
                return [(run.job_name, run.status.value) for run in runs]
            time.sleep(2)


def test_readme_parser_finds_the_documented_commands() -> None:
    commands = readme_commands(README.read_text())
    ran = [c for c in commands if why_not_run(c) is None]
    assert any(c.matches("ons-stack demo") for c in ran)
    assert any(c.matches("dagster job backfill") for c in ran)
    assert any(c.matches("dagster asset materialize") for c in ran)
    # The environment README tells CLI users to set is what the CLI commands get.
    cli = next(c for c in ran if c.matches("dagster job execute"))
    assert any(". ./.env" in line for line in cli.prelude)
    assert any("DAGSTER_HOME=$PWD/.local/dagster_home" in line for line in cli.prelude)
    assert any(c.matches("dagster dev") for c in commands)  # named as skipped, not lost


def test_every_readme_command_runs_as_written(project: Path) -> None:
    commands = readme_commands(README.read_text())
    runnable = [c for c in commands if why_not_run(c) is None]
    ordered = [c for c in runnable if not any(c.matches(p) for p in RUN_LAST)]
    ordered += [c for c in runnable if any(c.matches(p) for p in RUN_LAST)]
    report = [f"skipped  {c.text}  ({why_not_run(c)})" for c in commands if c not in runnable]
    failures = []
    api_port = free_port()
    for command in ordered:
        started = time.monotonic()
        result = _run(command, project, api_port)
        took = time.monotonic() - started
        report.append(f"exit {result.returncode}  {command.text}  ({took:.0f}s)")
        if result.returncode != 0:
            failures.append(
                f"$ {command.text}\nexit {result.returncode}\n"
                f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
            )
    sys.stdout.write("\n".join(report) + "\n")
    assert not failures, "\n\n".join(failures)

    runs = _wait_for_runs(project / ".local" / "dagster_home")
    jobs = {job for job, _ in runs}
    assert {"sales_star_schema_job", "energy_load_job", "visits_checkpoint_job"} <= jobs, runs
    # `dagster job backfill` queues one run per partition for the daemon (README says so);
    # everything else ran to success.
    queued = backfill_runs(runnable)
    backfilled = [run for run in runs if run[0] in queued and run[1] == "QUEUED"]
    assert len(backfilled) == sum(queued.values()), (queued, runs)
    assert all(run in backfilled or run[1] == "SUCCESS" for run in runs), runs


def backfill_runs(commands: list[Command]) -> dict[str, int]:
    """Per job, how many runs README's `dagster job backfill` commands queue."""
    counts: dict[str, int] = {}
    for command in commands:
        if not command.matches("dagster job backfill"):
            continue
        words = list(command.words)
        job = words[words.index("-j") + 1]
        partitions = words[words.index("--partitions") + 1].strip("'\"").split(",")
        counts[job] = counts.get(job, 0) + len(partitions)
    return counts
