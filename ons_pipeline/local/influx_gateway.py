"""InfluxDB v2 API in front of an InfluxDB 1.x server, for the local stack.

Debian ships InfluxDB 1.x, which has ``/write`` and ``/query`` but not the v2 API that
``influxdb-client`` speaks (and that Timestream for InfluxDB serves in production). This
gateway translates the part of v2 the project uses: writes, health, orgs and buckets. Flux is
not translated; reads for verification use InfluxQL over ``/query``, passed through unchanged.

The 1.x server runs with auth on: the gateway logs in to it with the admin credentials from
its environment, and accepts only clients with the token (also from its environment, so
neither shows on a command line).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ons_pipeline.resources.influxql import quote_identifier

UPSTREAM_TIMEOUT_SECONDS = 30.0
_PRECISIONS = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}
_PUBLIC_PATHS = frozenset({"/health", "/ping", "/ready"})
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|h|m|s)")
_GO_DURATION_SECONDS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}
# 1.x keeps every database's default policy under this name; 2.x's DBRP mapping expects it.
_RETENTION_POLICY = "autogen"
TOKEN_ENV = "ONS_GATEWAY_TOKEN"  # nosec B105  # a variable's name, not a secret
UPSTREAM_USERNAME_ENV = "ONS_GATEWAY_UPSTREAM_USERNAME"
UPSTREAM_PASSWORD_ENV = "ONS_GATEWAY_UPSTREAM_PASSWORD"  # nosec B105  # a variable's name, not a secret
# 1.x credentials in a query string; a client's are never passed on (the gateway logs in).
_CREDENTIAL_PARAMS = frozenset({"u", "p"})


class GatewayError(Exception):
    """A v2-style error response: HTTP status, v2 error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def stable_id(kind: str, name: str) -> str:
    """A 16-hex id derived from the name, so ids survive gateway restarts like 2.x ids do."""
    return hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:16]


def parse_go_duration(text: str) -> int:
    """Seconds in a Go duration as 1.x prints it (``61320h0m0s``); 0 means infinite."""
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return round(sum(float(n) * _GO_DURATION_SECONDS[u] for n, u in parts))


def _retention_seconds(request: dict[str, Any]) -> int:
    """The expire rule's seconds from a v2 bucket request (0: keep forever)."""
    every = 0
    for rule in request.get("retentionRules") or []:
        if rule.get("type", "expire") == "expire":
            every = int(rule.get("everySeconds") or 0)
    # 1.x and 2.x share this floor; 0 means keep forever.
    if 0 < every < 3600:
        raise GatewayError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "unprocessable entity",
            "retention policy duration must be at least 1h0m0s",
        )
    return every


class Upstream:
    """The 1.x server: raw HTTP plus the few InfluxQL statements buckets need."""

    def __init__(self, base_url: str, username: str = "", password: str = "") -> None:  # nosec B107  # empty: no credentials
        self.base_url = base_url.rstrip("/")
        self._auth: dict[str, str] = {}
        if username:  # influxd with auth on: every request logs in as this user
            credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._auth = {"Authorization": f"Basic {credentials}"}

    def request(
        self,
        method: str,
        path_and_query: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body; 4xx/5xx are returned, unreachable raises GatewayError."""
        req = urllib.request.Request(
            self.base_url + path_and_query,
            data=body,
            method=method,
            headers={**(headers or {}), **self._auth},
        )
        try:
            with urllib.request.urlopen(req, timeout=UPSTREAM_TIMEOUT_SECONDS) as resp:  # nosec B310  # http(s) URL from config
                return resp.status, dict(resp.headers.items()), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers.items()), err.read()
        except (urllib.error.URLError, OSError) as err:
            raise GatewayError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "unavailable",
                f"upstream InfluxDB {self.base_url} unreachable: {err}",
            ) from err

    def influxql(self, statement: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement (POST, as 1.x wants for writes); the result's series."""
        body = urllib.parse.urlencode({"q": statement}).encode()
        status, _, raw = self.request(
            "POST", "/query", body, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        message = _upstream_error_text(raw)
        if status >= 500:
            raise GatewayError(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", message)
        if status >= 400:
            raise GatewayError(HTTPStatus.BAD_REQUEST, "invalid", message)
        result = json.loads(raw)["results"][0]
        if "error" in result:
            raise GatewayError(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid", result["error"])
        return result.get("series", [])

    def databases(self) -> list[str]:
        series = self.influxql("SHOW DATABASES")
        return sorted(row[0] for s in series for row in s.get("values") or [])

    def default_policy(self, database: str) -> dict[str, Any]:
        """The database's default retention policy as SHOW RETENTION POLICIES gives it."""
        series = self.influxql(f"SHOW RETENTION POLICIES ON {quote_identifier(database)}")
        for s in series:
            columns = s["columns"]
            for row in s.get("values") or []:
                record = dict(zip(columns, row, strict=True))
                if record.get("default"):
                    return record
        return {}

    def default_retention(self, database: str) -> tuple[int, int]:
        """(retention seconds, shard group seconds) of the database's default policy."""
        record = self.default_policy(database)
        if not record:
            return 0, 0
        return (
            parse_go_duration(record["duration"]),
            parse_go_duration(record["shardGroupDuration"]),
        )

    def version(self) -> str:
        status, headers, _ = self.request("GET", "/ping")
        if status != HTTPStatus.NO_CONTENT:
            raise GatewayError(
                HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", f"upstream /ping gave {status}"
            )
        return next((v for k, v in headers.items() if k.lower() == "x-influxdb-version"), "")


def _upstream_error_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"]
    return text


class Gateway:
    """The translation itself, independent of the HTTP server plumbing."""

    def __init__(  # nosec B107  # empty: no credentials
        self, upstream: str, token: str, org: str, username: str = "", password: str = ""
    ) -> None:
        self.upstream = Upstream(upstream, username, password)
        self.token = token
        self.org = org
        self.org_id = stable_id("org", org)
        self._bucket_lock = threading.Lock()

    def authorized(self, headers: dict[str, str], query: dict[str, str]) -> bool:
        """2.x token auth; ``p=`` is accepted on ``/query`` like 2.x's v1-compatibility API."""
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "token":
            credential = query.get("p", "")
        return bool(credential) and hmac.compare_digest(credential.strip(), self.token)

    def resolve_org(self, query: dict[str, str]) -> None:
        name, org_id = query.get("org"), query.get("orgID")
        if not name and not org_id:
            raise GatewayError(
                HTTPStatus.BAD_REQUEST, "invalid", "Please provide either orgID or org"
            )
        if name and name not in (self.org, self.org_id):
            raise GatewayError(
                HTTPStatus.NOT_FOUND, "not found", f'organization name "{name}" not found'
            )
        if org_id and org_id != self.org_id:
            raise GatewayError(HTTPStatus.NOT_FOUND, "not found", "organization not found")

    def org_json(self) -> dict[str, Any]:
        return {
            "id": self.org_id,
            "name": self.org,
            "description": "",
            "links": {"self": f"/api/v2/orgs/{self.org_id}"},
        }

    def bucket_json(self, name: str) -> dict[str, Any]:
        every, shard = self.upstream.default_retention(name)
        bucket_id = stable_id("bucket", name)
        return {
            "id": bucket_id,
            "orgID": self.org_id,
            "type": "system" if name.startswith("_") else "user",
            "name": name,
            "retentionRules": [
                {"type": "expire", "everySeconds": every, "shardGroupDurationSeconds": shard}
            ],
            "labels": [],
            "links": {
                "self": f"/api/v2/buckets/{bucket_id}",
                "org": f"/api/v2/orgs/{self.org_id}",
                "write": f"/api/v2/write?org={self.org_id}&bucket={bucket_id}",
            },
        }

    def write(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> None:
        self.resolve_org(query)
        bucket = query.get("bucket", "")
        if not bucket:
            raise GatewayError(HTTPStatus.BAD_REQUEST, "invalid", "bucket is required")
        precision = query.get("precision") or "ns"
        if precision not in _PRECISIONS:
            raise GatewayError(
                HTTPStatus.BAD_REQUEST, "invalid", f"invalid precision {precision!r}"
            )
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error) as err:
                raise GatewayError(
                    HTTPStatus.BAD_REQUEST, "invalid", f"invalid gzip body: {err}"
                ) from err
        database = self._bucket_name(bucket)
        params = urllib.parse.urlencode({"db": database, "precision": _PRECISIONS[precision]})
        status, _, raw = self.upstream.request(
            "POST", f"/write?{params}", body, {"Content-Type": "text/plain; charset=utf-8"}
        )
        if status < 300:
            return
        message = _upstream_error_text(raw)
        if status == HTTPStatus.NOT_FOUND and "database not found" in message:
            raise GatewayError(HTTPStatus.NOT_FOUND, "not found", f'bucket "{bucket}" not found')
        if status < 500:
            raise GatewayError(status, "invalid", message)
        raise GatewayError(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", message)

    def _bucket_name(self, name_or_id: str) -> str:
        """v2 writes accept a bucket name or id; a 16-hex id is mapped back to its name."""
        if re.fullmatch(r"[0-9a-f]{16}", name_or_id):
            for name in self.upstream.databases():
                if stable_id("bucket", name) == name_or_id:
                    return name
        return name_or_id

    def list_buckets(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("org") not in (None, self.org, self.org_id) or query.get("orgID") not in (
            None,
            self.org_id,
        ):
            return {"links": {"self": "/api/v2/buckets"}, "buckets": []}
        names = self.upstream.databases()
        if "name" in query:
            names = [n for n in names if n == query["name"]]
        if "id" in query:
            names = [n for n in names if stable_id("bucket", n) == query["id"]]
        offset = int(query.get("offset") or 0)
        limit = int(query.get("limit") or 20)
        names = names[offset : offset + limit]
        return {
            "links": {"self": "/api/v2/buckets"},
            "buckets": [self.bucket_json(n) for n in names],
        }

    def get_bucket(self, bucket_id: str) -> dict[str, Any]:
        for name in self.upstream.databases():
            if stable_id("bucket", name) == bucket_id:
                return self.bucket_json(name)
        raise GatewayError(HTTPStatus.NOT_FOUND, "not found", "bucket not found")

    def create_bucket(self, body: bytes) -> dict[str, Any]:
        try:
            request = json.loads(body or b"{}")
        except ValueError as err:
            raise GatewayError(HTTPStatus.BAD_REQUEST, "invalid", f"invalid JSON: {err}") from err
        name = request.get("name") or ""
        if not name:
            raise GatewayError(HTTPStatus.BAD_REQUEST, "invalid", "bucket name is required")
        if name.startswith("_"):
            raise GatewayError(
                HTTPStatus.BAD_REQUEST, "invalid", "bucket name must not begin with '_'"
            )
        if request.get("orgID") not in (None, self.org_id):
            raise GatewayError(HTTPStatus.NOT_FOUND, "not found", "organization not found")
        every = _retention_seconds(request)
        with self._bucket_lock:
            if name in self.upstream.databases():
                raise GatewayError(
                    HTTPStatus.UNPROCESSABLE_ENTITY,
                    "conflict",
                    f"bucket with name {name} already exists",
                )
            duration = f"{every}s" if every else "INF"
            self.upstream.influxql(
                f"CREATE DATABASE {quote_identifier(name)} WITH DURATION {duration} "
                f"NAME {quote_identifier(_RETENTION_POLICY)}"
            )
        return self.bucket_json(name)

    def update_bucket(self, bucket_id: str, body: bytes) -> dict[str, Any]:
        """PATCH a bucket's retention: ALTER its database's default retention policy."""
        name = self.get_bucket(bucket_id)["name"]
        try:
            request = json.loads(body or b"{}")
        except ValueError as err:
            raise GatewayError(HTTPStatus.BAD_REQUEST, "invalid", f"invalid JSON: {err}") from err
        if request.get("retentionRules") is not None:
            every = _retention_seconds(request)
            policy = self.upstream.default_policy(name).get("name", _RETENTION_POLICY)
            self.upstream.influxql(
                f"ALTER RETENTION POLICY {quote_identifier(policy)} ON {quote_identifier(name)} "
                f"DURATION {f'{every}s' if every else 'INF'}"
            )
        return self.bucket_json(name)

    def delete_bucket(self, bucket_id: str) -> None:
        name = self.get_bucket(bucket_id)["name"]
        self.upstream.influxql(f"DROP DATABASE {quote_identifier(name)}")

    def health(self) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"name": "influxdb", "checks": [], "commit": ""}
        try:
            version = self.upstream.version()
        except GatewayError as err:
            body |= {"message": err.message, "status": "fail", "version": ""}
            return HTTPStatus.SERVICE_UNAVAILABLE, body
        body |= {"message": "ready for queries and writes", "status": "pass", "version": version}
        return HTTPStatus.OK, body


class GatewayHandler(BaseHTTPRequestHandler):
    """HTTP plumbing: route, authenticate, and render v2-style JSON errors."""

    protocol_version = "HTTP/1.1"
    server: GatewayServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json; charset=utf-8",
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode())

    def _dispatch(self, method: str) -> None:
        gateway = self.server.gateway
        url = urllib.parse.urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = self._read_body()
            if path not in _PUBLIC_PATHS and not gateway.authorized(headers, query):
                raise GatewayError(HTTPStatus.UNAUTHORIZED, "unauthorized", "unauthorized access")
            self._route(method, path, url.query, query, headers, body)
        except GatewayError as err:
            self._send_json(err.status, {"code": err.code, "message": err.message})
        except (ValueError, KeyError) as err:
            self._send_json(HTTPStatus.BAD_REQUEST, {"code": "invalid", "message": str(err)})
        except Exception as err:
            self.log_error("internal error: %r", err)
            self._send_json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"code": "internal error", "message": str(err)}
            )

    def _route(
        self,
        method: str,
        path: str,
        raw_query: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        gateway = self.server.gateway
        if path == "/ping":
            version = gateway.upstream.version()
            self._send(
                HTTPStatus.NO_CONTENT,
                extra_headers={"X-Influxdb-Version": version, "X-Influxdb-Build": "OSS"},
            )
        elif path == "/health":
            status, payload = gateway.health()
            self._send_json(status, payload)
        elif path == "/ready":
            self._send_json(HTTPStatus.OK, {"status": "ready", "started": "", "up": ""})
        elif path == "/api/v2/write" and method == "POST":
            gateway.write(query, headers, body)
            self._send(HTTPStatus.NO_CONTENT)
        elif path == "/api/v2/orgs" and method == "GET":
            wanted = query.get("org") or query.get("orgID")
            orgs = [] if wanted not in (None, gateway.org, gateway.org_id) else [gateway.org_json()]
            self._send_json(HTTPStatus.OK, {"links": {"self": "/api/v2/orgs"}, "orgs": orgs})
        elif path == f"/api/v2/orgs/{gateway.org_id}" and method == "GET":
            self._send_json(HTTPStatus.OK, gateway.org_json())
        elif path == "/api/v2/buckets" and method == "GET":
            self._send_json(HTTPStatus.OK, gateway.list_buckets(query))
        elif path == "/api/v2/buckets" and method == "POST":
            self._send_json(HTTPStatus.CREATED, gateway.create_bucket(body))
        elif path.startswith("/api/v2/buckets/") and path.count("/") == 4:
            bucket_id = path.rsplit("/", 1)[1]
            if method == "GET":
                self._send_json(HTTPStatus.OK, gateway.get_bucket(bucket_id))
            elif method == "PATCH":
                self._send_json(HTTPStatus.OK, gateway.update_bucket(bucket_id, body))
            elif method == "DELETE":
                gateway.delete_bucket(bucket_id)
                self._send(HTTPStatus.NO_CONTENT)
            else:
                raise GatewayError(
                    HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed", "method not allowed"
                )
        elif path == "/query" and method in ("GET", "POST"):
            self._proxy_query(method, raw_query, headers, body)
        elif path == "/api/v2/query":
            raise GatewayError(
                HTTPStatus.NOT_IMPLEMENTED,
                "not implemented",
                "Flux queries are not supported by the local InfluxDB 1.x gateway; "
                "read with InfluxQL via INFLUXDB_QUERY_URL/query",
            )
        else:
            raise GatewayError(HTTPStatus.NOT_FOUND, "not found", "path not found")

    def _proxy_query(
        self, method: str, raw_query: str, headers: dict[str, str], body: bytes
    ) -> None:
        forward = {k: v for k, v in headers.items() if k in ("content-type", "accept")}
        params = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        kept = urllib.parse.urlencode([(k, v) for k, v in params if k not in _CREDENTIAL_PARAMS])
        suffix = f"?{kept}" if kept else ""
        status, upstream_headers, raw = self.server.gateway.upstream.request(
            method, f"/query{suffix}", body if method == "POST" else None, forward
        )
        content_type = next(
            (v for k, v in upstream_headers.items() if k.lower() == "content-type"),
            "application/json",
        )
        self._send(status, raw, content_type)


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], gateway: Gateway, verbose: bool = False) -> None:
        super().__init__(address, GatewayHandler)
        self.gateway = gateway
        self.verbose = verbose


def make_server(  # nosec B107  # empty: no credentials
    host: str,
    port: int,
    upstream: str,
    token: str,
    org: str,
    verbose: bool = False,
    upstream_username: str = "",
    upstream_password: str = "",
) -> GatewayServer:
    """A bound server (port 0 picks a free one); call ``serve_forever`` to run it."""
    gateway = Gateway(upstream, token, org, upstream_username, upstream_password)
    return GatewayServer((host, port), gateway, verbose=verbose)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument(
        "--upstream", required=True, help="1.x base URL, e.g. http://127.0.0.1:8186"
    )
    parser.add_argument("--org", default="ons-energy")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        parser.error(f"set the clients' token in the environment variable {TOKEN_ENV}")
    server = make_server(
        args.listen_host,
        args.listen_port,
        args.upstream,
        token,
        args.org,
        args.verbose,
        upstream_username=os.environ.get(UPSTREAM_USERNAME_ENV, ""),
        upstream_password=os.environ.get(UPSTREAM_PASSWORD_ENV, ""),
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
