"""Small proxies on 127.0.0.1 that break chosen requests: HTTP in front of moto, TCP in front
of InfluxDB's gateway. Everything else is forwarded unchanged."""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class Fault:
    """Break the next `times` requests that match: an HTTP status, or a dropped connection
    before forwarding (`reset`) or after the upstream processed it (`lost_response`)."""

    method: str
    contains: str  # in the path, or in X-Amz-Target for the JSON protocols (SQS, SSM)
    action: int | str  # e.g. 503, "reset", "lost_response"
    times: int = 1
    hits: int = 0

    def matches(self, method: str, where: str) -> bool:
        return self.hits < self.times and method == self.method and self.contains in where


class FaultProxy:
    """An HTTP proxy in front of `upstream` (moto), injecting `faults` in order of listing."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                where = self.path + " " + str(self.headers.get("X-Amz-Target", ""))
                fault = proxy.take(self.command, where)
                if fault is not None and fault.action == "reset":
                    self._drop()
                    return
                if fault is not None and isinstance(fault.action, int):
                    self._reply(fault.action, [("Content-Type", "text/plain")], b"injected")
                    return
                status, headers, data = proxy.forward(self.command, self.path, self.headers, body)
                if fault is not None:  # lost_response: the upstream did it, the client never hears
                    self._drop()
                    return
                self._reply(status, headers, data)

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _drop(self) -> None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, method: str, where: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, where):
                    fault.hits += 1
                    return fault
        return None

    def forward(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            self.upstream.hostname, self.upstream.port, timeout=60
        )
        try:
            connection.request(method, path, body=body, headers=dict(headers.items()))
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DroppingTcpProxy:
    """A TCP proxy that cuts `drops` connections (after the first `skip`) once the client has
    sent `after_bytes` on them: a server dropping connections mid-request."""

    def __init__(
        self,
        upstream: str,
        *,
        drops: int = 0,
        after_bytes: int = 0,
        skip: int = 0,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        target = urlsplit(upstream)
        self.target = (target.hostname, target.port)
        self.drops, self.after_bytes, self.dropped = drops, after_bytes, 0
        self.skip, self.accepted = skip, 0  # the first `skip` connections are left alone
        self.on_bytes = on_bytes  # called with the bytes sent upstream so far
        self.sent = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                cut = self.accepted > self.skip and self.dropped < self.drops
                self.dropped += cut
            threading.Thread(target=self._serve, args=(client, cut), daemon=True).start()

    def _serve(self, client: socket.socket, cut: bool) -> None:
        upstream = socket.create_connection(self.target)  # type: ignore[arg-type]
        threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()
        self._pipe(client, upstream, self.after_bytes if cut else None)

    def _pipe(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        upstream = limit is not None or sink.getpeername() == self.target
        try:
            while data := source.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    sink.sendall(data[: max(0, limit - sent)])
                    break
                sink.sendall(data)
                sent += len(data)
                if upstream and self.on_bytes is not None:
                    with self.lock:
                        self.sent += len(data)
                        total = self.sent
                    self.on_bytes(total)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def close(self) -> None:
        self.listener.close()
