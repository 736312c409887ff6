"""Mutation check: plant one small, realistic bug at a time and see whether the tests notice.

Each mutation replaces one exact piece of source text (which must occur exactly once) and
runs only the tests that should catch it, so the whole check stays bounded. It works on a
copy of the repository in a temporary directory (the real files are never touched): the copy
comes first on PYTHONPATH, so pytest and every subprocess it starts import the mutated copy.
The file is restored after each mutation, also on Ctrl-C or an exception, and the copy is
removed at the end.

    .venv/bin/python scripts/mutation_check.py            # every mutation
    .venv/bin/python scripts/mutation_check.py --list     # names only
    .venv/bin/python scripts/mutation_check.py -k sales   # names containing "sales"

Prints killed / survived per mutation and the total. Exit status 1 if any survived.
Integration tests start the local stack (influxd) as the test suite does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".local", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis",
    "*.egg-info", "build", "dist",
)  # fmt: skip
MUTATION_TIMEOUT_S = 600  # one mutation's tests; a hang counts as killed (pytest-timeout fires)


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids or paths, relative to the repository
    why: str


U = "ons_pipeline_tests/unit"
I = "ons_pipeline_tests/integration"  # noqa: E741

MUTATIONS: tuple[Mutation, ...] = (
    # The six blind spots of issue 17.
    Mutation(
        "launcher: secret check stops at nested mappings",
        "ons_pipeline/platform/launcher/payload.py",
        "            else:\n                yield from literal_secrets(value, child)",
        "            elif isinstance(value, list | tuple):\n"
        "                yield from literal_secrets(value, child)",
        (
            f"{U}/platform/test_secret_screening.py",
            f"{U}/platform/test_launcher.py",
            "ons_pipeline_tests/test_deploy.py",
        ),
        "storage.postgres.postgres_db.password: hunter2 would ride in every payload",
    ),
    Mutation(
        "energy: Timestream cap 101",
        "ons_pipeline/energy/timestream_records.py",
        "MAX_RECORDS_PER_CALL: Final = 100",
        "MAX_RECORDS_PER_CALL: Final = 101",
        (f"{U}/energy/test_timestream_limit.py", f"{U}/energy/test_transform.py"),
        "real Timestream refuses a WriteRecords call of 101 records",
    ),
    Mutation(
        "visits: AccessDenied/InternalError read as missing",
        "ons_pipeline/resources/aws.py",
        '{"NoSuchKey", "404"}:\n                return None\n            raise\n'
        '        return response["Body"].read(), response["ETag"]',
        '{"NoSuchKey", "404", "AccessDenied", "InternalError"}:\n                return None\n'
        '            raise\n        return response["Body"].read(), response["ETag"]',
        (f"{U}/visits/test_state_read_errors.py",),
        "a failed ledger read re-reads everything; a failed event read loses its message",
    ),
    Mutation(
        "visits: notification clock margin sign flipped",
        "ons_pipeline/visits/notifications.py",
        "round((listing_started - clock_margin_s) * 1000)",
        "round((listing_started + clock_margin_s) * 1000)",
        (f"{U}/visits/test_notification_margin.py", "ons_pipeline_tests/test_deploy.py"),
        "announcements up to a margin after the listing began are deleted unread",
    ),
    Mutation(
        "sales: zero units quarantined",
        "ons_pipeline/sales/transform.py",
        'flag((typed["units_sold"] < 0)',
        'flag((typed["units_sold"] <= 0)',
        (f"{U}/sales/test_units_sold.py", f"{U}/sales/test_transform.py"),
        "valid zero-unit orders go to quarantine",
    ),
    Mutation(
        "energy: rows-accounted-for always passes",
        "ons_pipeline/energy/checks.py",
        "passed=rows == written + deduplicated + rejected,",
        "passed=True,",
        (f"{U}/energy/test_accounting_check.py",),
        "a lost row goes unnoticed",
    ),
    # Sales.
    Mutation(
        "sales: wall-clock timestamp in the output name",
        "ons_pipeline/sales/assets.py",
        "key = output_key(table, sequence, watermark)",
        "key = output_key(table, sequence, pd.Timestamp.now().to_pydatetime())",
        (
            f"{U}/sales/test_outputs.py",
            f"{I}/sales/test_sales_job.py::"
            "test_file_names_follow_the_data_and_dimensions_hold_the_latest_version",
        ),
        "a re-run names a different file; names no longer follow the data",
    ),
    Mutation(
        "sales: output sequence not zero-padded",
        "ons_pipeline/sales/outputs.py",
        "_packet_{sequence:08d}_processed_",
        "_packet_{sequence}_processed_",
        (f"{U}/sales/test_outputs.py",),
        "names no longer sort by sequence",
    ),
    Mutation(
        "sales: watermark is the oldest update",
        "ons_pipeline/sales/outputs.py",
        "if candidate and (newest is None or candidate > newest):",
        "if candidate and (newest is None or candidate < newest):",
        (f"{U}/sales/test_outputs.py",),
        "file names stamped with the wrong last_updated",
    ),
    Mutation(
        "sales: changed rows inverted",
        "ons_pipeline/sales/outputs.py",
        "return current[~now.isin(before).to_numpy()].reset_index(drop=True)",
        "return current[now.isin(before).to_numpy()].reset_index(drop=True)",
        (f"{U}/sales/test_outputs.py",),
        "a run writes the unchanged rows instead of the changed ones",
    ),
    Mutation(
        "sales: unknown currency codes accepted",
        "ons_pipeline/sales/transform.py",
        'flag(~known & typed["currency_code"].notna().to_numpy(), "unknown_currency_code", None)',
        'flag(~known & typed["currency_code"].isna().to_numpy(), "unknown_currency_code", None)',
        (f"{U}/sales/test_transform.py",),
        "a currency the seed does not know reaches dim_currency",
    ),
    Mutation(
        "sales: packet key takes any digit count",
        "ons_pipeline/sales/packets.py",
        r"-packet-(?P<id>\d{8})\.jsonl",
        r"-packet-(?P<id>\d+)\.jsonl",
        (f"{U}/sales/test_packets.py",),
        "a mis-named object is read as a packet",
    ),
    # Energy.
    Mutation(
        "energy: throttling not retried by Timestream",
        "ons_pipeline/resources/timestream.py",
        '_RETRYABLE_CODES = {"ThrottlingException", "InternalServerException", '
        '"ServiceUnavailable"}',
        '_RETRYABLE_CODES = {"InternalServerException", "ServiceUnavailable"}',
        (f"{U}/energy/test_resources.py",),
        "a throttled load fails instead of backing off",
    ),
    Mutation(
        "energy: Timestream rejected records counted as written",
        "ons_pipeline/resources/timestream.py",
        "result.written = len(records) - len(result.rejected)",
        "result.written = len(records)",
        (f"{U}/energy/test_resources.py",),
        "rows counted twice: written and rejected",
    ),
    Mutation(
        "energy: InfluxDB 429 not retried",
        "ons_pipeline/resources/influxdb.py",
        "if status != 429 and status < 500:",
        "if status < 500:",
        (f"{U}/energy/test_resources.py",),
        "a rate-limited write fails instead of backing off",
    ),
    Mutation(
        "energy: InfluxDB batches one line short",
        "ons_pipeline/energy/line_protocol.py",
        "for start in range(0, len(lines), batch_size):\n"
        "        stop = min(start + batch_size, len(lines))",
        "for start in range(0, len(lines), batch_size):\n"
        "        stop = min(start + batch_size - 1, len(lines))",
        (f"{U}/energy/test_transform.py",),
        "the last line of every batch is never written",
    ),
    Mutation(
        "energy: readback accepts fewer values than written",
        "ons_pipeline/energy/readback.py",
        "            if got < count:\n",
        "            if got < count - 1:\n",
        (f"{U}/energy/test_readback.py", f"{I}/energy/test_energy_load.py"),
        "a point lost by InfluxDB passes the readback check",
    ),
    # Visits.
    Mutation(
        "visits: message without SentTimestamp counted as covered",
        "ons_pipeline/visits/notifications.py",
        "(before if sent is not None and sent < cutoff_ms else rest)",
        "(before if sent is None or sent < cutoff_ms else rest)",
        (f"{U}/visits/test_notification_age.py",),
        "a message that cannot be shown older is deleted unread",
    ),
    Mutation(
        "visits: listing ranges cut one key late",
        "ons_pipeline/visits/storage.py",
        "per_range - 1 :: per_range",
        "per_range :: per_range",
        (f"{U}/visits/test_listing.py",),
        "ranges hold one key more than the page budget",
    ),
    Mutation(
        "visits: range listing drops its upper bound",
        "ons_pipeline/visits/storage.py",
        "if key_range.through is not None and key > key_range.through:",
        "if key_range.through is not None and key >= key_range.through:",
        (f"{U}/visits/test_listing.py",),
        "every range boundary key is never listed",
    ),
    Mutation(
        "visits: checkpoint written without its precondition",
        "ons_pipeline/resources/aws.py",
        'condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}',
        "condition: dict[str, str] = {}",
        (f"{U}/visits/test_state_read_errors.py",),
        "two concurrent runs both win and one loses the other's events",
    ),
    # Launcher.
    Mutation(
        "launcher: health grace inverted",
        "ons_pipeline/platform/launcher/lambda_launcher.py",
        "if overdue <= self.health_grace_seconds:",
        "if overdue >= self.health_grace_seconds:",
        (f"{U}/platform/test_launcher.py",),
        "runs that outlived Lambda are never marked failed",
    ),
    Mutation(
        "launcher: AccessDeniedException not explained",
        "ons_pipeline/platform/launcher/lambda_launcher.py",
        'if code in {"AccessDeniedException", "AccessDenied", "UnrecognizedClientException"}:',
        'if code in {"AccessDenied", "UnrecognizedClientException"}:',
        (f"{U}/platform/test_launcher.py",),
        "the operator is not told which IAM permission is missing",
    ),
    Mutation(
        "launcher: URLs with a password not screened",
        "ons_pipeline/platform/launcher/payload.py",
        "_SECRET_KEY.search(str(key)) or _URL_WITH_PASSWORD.match(value)",
        "_SECRET_KEY.search(str(key))",
        (f"{U}/platform/test_launcher.py",),
        "postgres_url: postgresql://u:pw@host is copied into the payload",
    ),
    Mutation(
        "launcher: long-running tag ignored",
        "ons_pipeline/platform/launcher/routing.py",
        "if run.tags.get(self.route_tag) == payload.LONG_RUNNING:",
        "if run.tags.get(self.route_tag) == payload.FUNCTION_TAG:",
        (f"{U}/platform/test_launcher.py",),
        "long backfills go to Lambda and die at 15 minutes",
    ),
)


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # killed, survived, error
    seconds: float
    detail: str = ""


def copy_repository(target: Path) -> Path:
    tree = target / "repo"
    shutil.copytree(REPO, tree, ignore=COPY_IGNORE)
    return tree


def environment(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_copy_is_imported(tree: Path, env: dict[str, str]) -> None:
    found = subprocess.run(
        [sys.executable, "-c", "import ons_pipeline; print(ons_pipeline.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the copy is not what gets imported ({found}); refusing to run")


def run_pytest(tree: Path, env: dict[str, str], tests: tuple[str, ...]) -> tuple[int, str]:
    """Run the tests in their own process group; on Ctrl-C or a hang, end that group only."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    process = subprocess.Popen(
        command,
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=MUTATION_TIMEOUT_S)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return process.returncode, output


def last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:120] if lines else ""


def apply(tree: Path, mutation: Mutation) -> tuple[Path, str]:
    path = tree / mutation.path
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        raise ValueError(f"{mutation.path}: the text to mutate occurs {count} times, not once")
    path.write_text(original.replace(mutation.old, mutation.new))
    return path, original


def run_one(tree: Path, env: dict[str, str], mutation: Mutation) -> Outcome:
    started = time.monotonic()
    try:
        path, original = apply(tree, mutation)
    except ValueError as error:
        return Outcome(mutation, "error", 0.0, str(error))
    try:
        code, output = run_pytest(tree, env, mutation.tests)
    except subprocess.TimeoutExpired:
        return Outcome(mutation, "killed", time.monotonic() - started, "tests timed out")
    finally:
        path.write_text(original)
    elapsed = time.monotonic() - started
    if code == 0:
        return Outcome(mutation, "survived", elapsed, last_line(output))
    if code == 1:  # tests ran and failed
        return Outcome(mutation, "killed", elapsed, last_line(output))
    return Outcome(mutation, "error", elapsed, f"pytest exit {code}: {last_line(output)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="select", help="only mutations whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--no-baseline", action="store_true", help="do not first check the tests pass unmutated"
    )
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress as it goes
    chosen = [m for m in MUTATIONS if not args.select or args.select.lower() in m.name.lower()]
    if args.list:
        for mutation in chosen:
            print(f"{mutation.name}: {mutation.path} -> {' '.join(mutation.tests)}")
        return 0
    if not chosen:
        parser.error("no mutation matches")

    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="ons-mutation-") as scratch:
        tree = copy_repository(Path(scratch))
        env = environment(tree)
        check_copy_is_imported(tree, env)
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            started = time.monotonic()
            code, output = run_pytest(tree, env, tests)
            print(
                f"baseline: exit {code} in {time.monotonic() - started:.0f}s: {last_line(output)}"
            )
            if code != 0:
                print(output[-4000:])
                print("the tests fail without any mutation: fix them first")
                return 2
        for mutation in chosen:
            outcome = run_one(tree, env, mutation)
            outcomes.append(outcome)
            print(
                f"{outcome.status.upper():8} {outcome.seconds:6.0f}s  {mutation.name}"
                f"  [{outcome.detail}]"
            )

    killed = sum(o.status == "killed" for o in outcomes)
    survived = [o for o in outcomes if o.status == "survived"]
    errors = [o for o in outcomes if o.status == "error"]
    print(f"\nkilled {killed}/{len(outcomes)} mutations ({killed / len(outcomes):.0%})")
    for outcome in survived:
        print(f"  survived: {outcome.mutation.name} ({outcome.mutation.why})")
    for outcome in errors:
        print(f"  error: {outcome.mutation.name}: {outcome.detail}")
    return 1 if survived or errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the file was restored and the copy removed on the way out
        print("\ninterrupted: the repository copy and its processes are gone", file=sys.stderr)
        sys.exit(130)
