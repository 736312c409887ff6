"""``ons-stack``: start, inspect and stop the local stack from a shell."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ons_pipeline.local import query_api
from ons_pipeline.local.stack import LocalStack, StackError

DEFAULT_MOTO_PORT = 5055
DEFAULT_INFLUX_PORT = 8186
DEFAULT_GATEWAY_PORT = 8187


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ons-stack",
        description="Local AWS (moto) and InfluxDB for ons_pipeline, on 127.0.0.1.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where pids, logs and InfluxDB data live (default: ./.local/stack)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start the stack (or reuse a running one), bootstrap it and write .env"),
        ("demo", "`up`, then run the end-to-end demo against the stack"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)
        cmd.add_argument("--env-file", type=Path, default=Path(".env"))
        cmd.add_argument("--moto-port", type=int, default=DEFAULT_MOTO_PORT)
        cmd.add_argument("--influx-port", type=int, default=DEFAULT_INFLUX_PORT)
        cmd.add_argument("--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT)
        cmd.add_argument(
            "--api-port",
            type=int,
            # ONS_QUERY_API_PORT moves the default (tests run README's commands on free ports).
            default=int(os.environ.get("ONS_QUERY_API_PORT") or query_api.DEFAULT_API_PORT),
        )
        if name == "demo":
            cmd.add_argument(
                "--project-dir", type=Path, default=None, help="default: current directory"
            )
    for name, help_text in (
        ("down", "stop what `up` started"),
        ("status", "show what is running"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)
    return parser


def _up(args: argparse.Namespace, state_dir: Path) -> LocalStack:
    stack = LocalStack(
        state_dir,
        moto_port=args.moto_port,
        influx_port=args.influx_port,
        gateway_port=args.gateway_port,
        detach=True,
    )
    stack.start()
    env_file = stack.write_env_file(args.env_file.resolve())
    verb = "Reusing the running" if stack.reused else "Started the"
    print(f"{verb} local stack (state: {stack.state_dir})")
    print(f"  AWS (moto):        {stack.moto_url}")
    if stack.influx_major >= 2:
        print(f"  InfluxDB 2.x:      {stack.influxd_url}")
    else:
        print(f"  InfluxDB v2 API:   {stack.influxdb_url}  (gateway)")
        print(f"  InfluxQL /query:   {stack.influxd_url}  (influxd 1.x)")
    api = query_api.start_api(
        stack.env,
        args.api_port,
        stack.log_dir / "query_api.log",
        stack.state_dir,
        reuse=stack.reused,  # a new stack has new ports: the API restarts with them
    )
    print(f'  Query API:         {api.url}/query  (POST {{"question": ...}})')
    print(f"  logs:              {stack.log_dir}")
    print(f"Wrote {env_file}")
    print("Next: `dagster dev` (reads .env), `ons-stack status`, `ons-stack down` when done.")
    return stack


def _status(state_dir: Path) -> int:
    status = LocalStack(state_dir, detach=True).status()
    if not status:
        print(f"No local stack recorded in {state_dir}.")
        return 1
    all_up = True
    for name, info in status.items():
        state = "up" if info["alive"] else "DOWN"
        all_up = all_up and info["alive"]
        print(f"  {name:<8} {state:<5} pid {info['pid']:<8} {info['url']}")
    api = query_api.read_recorded(state_dir)
    if api is not None:
        state = "up" if query_api.is_running(api) else "DOWN"
        all_up = all_up and state == "up"
        print(f"  {'api':<8} {state:<5} pid {api.pid:<8} {api.url}")
    return 0 if all_up else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state_dir = (args.state_dir or Path.cwd() / ".local" / "stack").resolve()
    try:
        if args.command == "up":
            _up(args, state_dir)
            return 0
        if args.command == "down":
            stack = LocalStack(state_dir, detach=True)
            recorded = stack.status()
            query_api.stop_recorded(state_dir)
            stack.stop()
            if recorded:
                print(f"Stopped the local stack in {state_dir}.")
            else:
                print(f"No local stack recorded in {state_dir}; nothing to stop.")
            return 0
        if args.command == "status":
            return _status(state_dir)
        if args.command == "demo":
            stack = _up(args, state_dir)
            try:
                from ons_pipeline.local.demo.driver import run_demo
            except ModuleNotFoundError as err:
                if err.name not in {"ons_pipeline.local.demo", "ons_pipeline.local.demo.driver"}:
                    raise
                print(
                    "ons-stack: the demo (ons_pipeline/local/demo/) is not installed",
                    file=sys.stderr,
                )
                return 1
            return run_demo(stack.env, (args.project_dir or Path.cwd()).resolve())
    except (StackError, query_api.ApiError) as err:
        print(f"ons-stack: {err}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
