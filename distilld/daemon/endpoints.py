"""``/metrics``, ``/healthz`` and ``/readyz`` on the metrics port, in a background thread.

- ``/healthz``: 200 while the processing loop has turned within
  ``metrics.health_timeout_s``; 503 when it is stuck (a liveness probe
  restarts the pod).
- ``/readyz``: 200 when a broker is up and the instance has joined its group
  (with partitions, or with nothing to assign); 503 otherwise: no broker
  connection, not yet in the consumer group (at start-up, until the first
  assignment), a subscribed input topic not found while nothing is assigned,
  while the committed offsets of assigned partitions cannot be read (those
  partitions are not read until a retry reads them), while assigned
  partitions' windows are being restored (the loop reads the state topic
  between polls; those partitions are read once restored),
  while an exactly-once transaction the brokers have not taken is retried
  (nothing is read meanwhile: it is named before any partition waiting),
  while the loop or the brokers are stuck (the loop has not turned, or no
  broker statistics have come, for 5 statistics intervals, 15 s at least),
  while the schema registry is unreachable (a batch waits for it, the
  consumer's statistics not served meanwhile; the body says how long),
  and while stopping. The body says which, naming the first 10 partitions
  waiting and counting the rest; partitions whose committed offsets have not
  been read yet are "not read yet", "(retrying)" once a lookup has failed.

They answer from the moment the port is bound: during start-up (the engine
compiling, seconds) ``/healthz`` answers 200 and ``/readyz`` 503 saying what
start-up is doing (:attr:`Endpoints.starting`). HEAD gets GET's status and
headers without the body.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.metrics_core import Metric

__all__ = ["Endpoints"]


class Endpoints:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health_timeout_s: float,
        ready: Callable[[], tuple[bool, str]],
        ready_gauge: Gauge | None = None,
    ) -> None:
        self.registry = registry
        self.health_timeout_s = health_timeout_s
        self.ready = ready
        self.ready_gauge = ready_gauge  # set at every scrape: it says what /readyz says, even with the loop stuck
        self.heartbeat = time.monotonic()
        # what start-up is doing, until the loop runs: the process is alive (/healthz), not ready (/readyz)
        self.starting: str | None = None
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    if endpoints.ready_gauge is not None:
                        endpoints.ready_gauge.set(1 if endpoints.readiness()[0] else 0)
                    self._send(200, generate_latest(_WithoutCreated(endpoints.registry)), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    stuck = time.monotonic() - endpoints.heartbeat
                    if endpoints.starting is not None or stuck <= endpoints.health_timeout_s:
                        self._send(200, b"ok\n")
                    else:
                        self._send(503, f"processing loop stuck for {stuck:.0f}s\n".encode())
                elif path == "/readyz":
                    ok, why = endpoints.readiness()
                    self._send(200 if ok else 503, f"{why}\n".encode())
                else:
                    self._send(404, b"not found: try /metrics, /healthz, /readyz\n")

            # some load balancers and probes ask with HEAD: the GET's status and headers, no body (was 501)
            do_HEAD = do_GET

            def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = _server_for(host)((host, port), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="distilld-http", daemon=True)

    def start(self) -> Endpoints:
        """Serve, in the background thread; once only, later calls changing nothing."""
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def readiness(self) -> tuple[bool, str]:
        return (False, self.starting) if self.starting is not None else self.ready()

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _WithoutCreated:
    """``registry``'s metrics without the ``<name>_created`` series of counters and histograms (a timestamp a
    label set, which README's list does not name and no dashboard or alert reads). prometheus_client's own
    switch, disable_created_metrics(), turned them off for every registry of the process: a program that
    embeds the daemon lost its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            created = metric.name + "_created"
            if any(sample.name == created for sample in metric.samples):
                kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                kept.samples = [sample for sample in metric.samples if sample.name != created]
                metric = kept
            yield metric


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up before its answer (a probe that timed out) is no error of ours: no traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _server_for(host: str) -> type[ThreadingHTTPServer]:
    """The HTTP server class for ``host``'s address family (``ThreadingHTTPServer`` alone is IPv4
    only): an IPv6 address (``::`` on an IPv6-only cluster) gets an IPv6 socket, which for ``::``
    takes IPv4 connections too where the system allows it."""
    try:
        family = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror:
        family = socket.AF_INET  # binding then fails with the resolver's reason
    if family != socket.AF_INET6:
        return _Server

    class DualStack(_Server):
        address_family = socket.AF_INET6

        def server_bind(self) -> None:
            with contextlib.suppress(OSError, AttributeError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    return DualStack
