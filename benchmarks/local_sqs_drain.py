"""Benchmark: draining an SQS queue from stock moto vs the local stack's moto_server.

moto 5.2 recomputes every queue attribute for each message ReceiveMessage returns, so a
drain is O(n^2); `ons_pipeline.local.moto_server` reads the retention period directly.
Both servers run as child processes on free ports and are drained over HTTP the same way.

    python benchmarks/local_sqs_drain.py [--messages 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request

import boto3

from ons_pipeline.local.stack import free_port

SERVERS = {
    "stock moto": ["-m", "moto.server"],
    "ons_pipeline.local.moto_server": ["-m", "ons_pipeline.local.moto_server"],
}


def drain_seconds(argv: list[str], messages: int) -> tuple[float, int, int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, *argv, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"ONS_STACK_MOTO_URL": f"http://127.0.0.1:{port}", "PATH": ""},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        sqs = boto3.client(
            "sqs",
            endpoint_url=url,
            region_name="eu-west-2",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        queue = sqs.create_queue(QueueName="drain")["QueueUrl"]
        for start in range(0, messages, 10):
            entries = [
                {"Id": str(i), "MessageBody": json.dumps({"n": start + i})}
                for i in range(min(10, messages - start))
            ]
            sqs.send_message_batch(QueueUrl=queue, Entries=entries)
        started = time.perf_counter()
        received = calls = 0
        while True:
            calls += 1
            batch = sqs.receive_message(
                QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=900
            ).get("Messages", [])
            if not batch:
                return time.perf_counter() - started, received, calls
            received += len(batch)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000)
    args = parser.parse_args()
    results = {}
    for name, argv in SERVERS.items():
        seconds, received, calls = drain_seconds(argv, args.messages)
        results[name] = seconds
        print(f"{name}: {received:,} messages in {calls} receives, {seconds:.2f} s")
    baseline, fixed = results["stock moto"], results["ons_pipeline.local.moto_server"]
    print(f"speed-up over stock moto: {baseline / fixed:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
