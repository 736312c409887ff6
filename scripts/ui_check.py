"""Drive the Dagster UI in headless Chromium and print what a person would see.

Starts `dagster-webserver -m ons_pipeline.definitions` on a free port with a throwaway
`DAGSTER_HOME`, loads the asset pages and the sales launchpad in headless Chromium
(`--dump-dom`, optionally `--screenshot`), and prints: the groups listed, each checked
asset's column names with their descriptions, and the launchpad's pre-filled config. Exits
1 when something expected is missing.

CI does not install Chromium, so this is a script; `test_webserver.py` checks the same facts
over GraphQL. Needs Debian's `chromium` (`apt-get install -y chromium`).

Usage: .venv/bin/python scripts/ui_check.py [--screenshots DIR]
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ons_pipeline.energy.schema import COLUMN_DESCRIPTIONS as ENERGY_COLUMNS
from ons_pipeline.local.stack import free_port
from ons_pipeline.sales.schema import COLUMN_DESCRIPTIONS as SALES_COLUMNS
from ons_pipeline.sales.schema import STAR_SCHEMAS
from ons_pipeline.visits.schema import CHECKPOINT_SCHEMA
from ons_pipeline.visits.schema import COLUMN_DESCRIPTIONS as VISITS_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "ons_pipeline.definitions"
GROUPS = ("sales", "energy", "visits")
# Asset page -> (columns it must show, their descriptions).
ASSET_PAGES = {
    "fact_sales_order": {f.name: SALES_COLUMNS[f.name] for f in STAR_SCHEMAS["fact_sales_order"]},
    "energy/influxdb_points": {k: ENERGY_COLUMNS[k] for k in ("timestamp", "region", "value")},
    "visit_events_checkpoint": {f.name: VISITS_COLUMNS[f.name] for f in CHECKPOINT_SCHEMA},
}
LAUNCHPAD = f"/locations/{LOCATION}/jobs/sales_packets_job/playground"


def _start_webserver(home: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-2",
    }
    executable = Path(sys.executable).with_name("dagster-webserver")
    command = [str(executable), "-m", LOCATION, "-h", "127.0.0.1", "-p", str(port)]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_loaded(base: str, process: subprocess.Popen[bytes], deadline_s: float = 120) -> None:
    query = (
        b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"}'
    )
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"dagster-webserver exited with {process.returncode}")
        try:
            request = urllib.request.Request(
                f"{base}/graphql", data=query, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                if b'"LOADED"' in response.read():
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"code location not loaded after {deadline_s:.0f}s")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("no Chromium found: apt-get install -y chromium")


def _page(browser: str, url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page's text after its scripts ran (DOM dump, tags stripped)."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1600,1200",
        "--virtual-time-budget=20000",
    ]
    if screenshot is not None:
        subprocess.run(
            [browser, *flags, f"--screenshot={screenshot}", url],
            capture_output=True,
            timeout=120,
            check=False,
        )
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, default=None, help="write PNGs here")
    args = parser.parse_args()
    browser = _chromium()
    missing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ons-ui-check-") as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("")
        # The first-visit "Join the community" dialog would cover the page (as Skip does).
        (home / ".nux").mkdir()
        (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = _start_webserver(home, port, Path(tmp) / "webserver.log")
        try:
            _wait_loaded(base, process)
            shots = args.screenshots
            if shots:
                shots.mkdir(parents=True, exist_ok=True)

            def shot(name: str) -> Path | None:
                return shots / f"{name}.png" if shots else None

            text = _page(browser, f"{base}/assets", Path(tmp) / "p0", shot("assets"))
            groups = [g for g in GROUPS if re.search(rf"\b{g}\b", text)]
            print(f"Asset catalog: groups shown: {groups}")
            missing += [f"group {g}" for g in GROUPS if g not in groups]

            for index, (asset, columns) in enumerate(ASSET_PAGES.items(), start=1):
                url = f"{base}/assets/{asset}"
                text = _page(browser, url, Path(tmp) / f"p{index}", shot(asset.replace("/", "_")))
                print(f"\nAsset {asset}: columns shown with their descriptions:")
                for name, description in columns.items():
                    seen = name in text and description in text
                    print(f"  {'ok ' if seen else 'MISSING'} {name}: {description}")
                    if not seen:
                        missing.append(f"{asset} column {name}")
                owner = "ons-data-platform" in text
                print(f"  owner shown: {owner}")
                if not owner:
                    missing.append(f"{asset} owner")

            text = _page(browser, f"{base}{LAUNCHPAD}", Path(tmp) / "pl", shot("launchpad"))
            found = re.search(r"\bops\s*:.{0,160}", text)
            prefilled = bool(found) and "packets" in found.group(0) and "sales_order" in text
            print(f"\nLaunchpad sales_packets_job pre-filled: {prefilled}")
            print(f"  editor shows: {found.group(0) if found else '(nothing)'}")
            if not prefilled:
                missing.append("launchpad packets example")
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    print("\nUI check: " + ("all shown" if not missing else f"MISSING {missing}"))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
