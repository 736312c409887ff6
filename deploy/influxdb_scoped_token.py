r"""Create the pipelines' InfluxDB token: read and write on the three energy buckets, nothing else.

Run once after `terraform apply`, from a host that reaches the Timestream for InfluxDB
instance. It signs in as the admin user, creates any missing bucket (seven-year retention),
creates a token scoped to read and write exactly those buckets and stores it in Secrets
Manager (`INFLUXDB_TOKEN_SECRET_NAME`). The admin password is read from the environment, never
from the command line; the token is never printed.

    INFLUXDB_ADMIN_PASSWORD=... python deploy/influxdb_scoped_token.py \
        --url https://<influxdb_endpoint>:8086 --org ons-energy
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

ADMIN_PASSWORD_ENV = "INFLUXDB_ADMIN_PASSWORD"  # nosec B105  # a variable's name


def scoped_permissions(org_id: str, bucket_ids: dict[str, str]) -> list[Any]:
    """Read and write per bucket: no org-wide, user, token or bucket-management rights."""
    from influxdb_client import Permission, PermissionResource

    return [
        Permission(
            action=action,
            resource=PermissionResource(type="buckets", id=bucket_id, name=name, org_id=org_id),
        )
        for name, bucket_id in sorted(bucket_ids.items())
        for action in ("read", "write")
    ]


def main(argv: list[str] | None = None) -> int:
    from ons_pipeline.resources import defaults
    from ons_pipeline.resources.influxdb import RETENTION_SECONDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="https://<influxdb_endpoint>:8086")
    parser.add_argument("--org", default=defaults.INFLUXDB_ORG)
    parser.add_argument("--username", default="ons-admin")
    parser.add_argument("--secret-id", default="ons/influxdb/token")
    args = parser.parse_args(argv)
    password = os.environ.get(ADMIN_PASSWORD_ENV)
    if not password:
        parser.error(f"set {ADMIN_PASSWORD_ENV} (Terraform state holds it: random_password)")

    import boto3
    from influxdb_client import BucketRetentionRules, InfluxDBClient

    with InfluxDBClient(
        url=args.url, username=args.username, password=password, org=args.org
    ) as client:
        org = client.organizations_api().find_organizations(org=args.org)[0]
        buckets = client.buckets_api()
        ids: dict[str, str] = {}
        for name in defaults.INFLUXDB_BUCKETS:
            bucket = buckets.find_bucket_by_name(name) or buckets.create_bucket(
                bucket_name=name,
                org=args.org,
                retention_rules=BucketRetentionRules(
                    type="expire", every_seconds=RETENTION_SECONDS
                ),
            )
            ids[name] = bucket.id
        authorization = client.authorizations_api().create_authorization(
            org_id=org.id, permissions=scoped_permissions(org.id, ids)
        )
    boto3.client("secretsmanager").put_secret_value(
        SecretId=args.secret_id, SecretString=authorization.token
    )
    sys.stdout.write(
        f"Stored token {authorization.id} (read/write on {', '.join(sorted(ids))}) in "
        f"{args.secret_id}. Delete any all-access token the pipelines used before.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
