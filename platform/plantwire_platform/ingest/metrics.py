"""Prometheus metrics of an ingest worker, and a small HTTP listener serving ``/metrics``.

Each worker has its own :class:`~prometheus_client.CollectorRegistry` (no process-global
state), served on ``PLANTWIRE_METRICS_PORT`` when set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngestMetrics:
    """The counters, gauges and histograms of one worker."""

    def __init__(self, worker: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = {"worker": worker}
        self.messages = Counter(
            "plantwire_ingest_messages",
            "Sparkplug messages taken, by message type",
            ["worker", "type"],
            registry=r,
        )
        self.samples = Counter(
            "plantwire_ingest_samples", "Sample rows committed", ["worker"], registry=r
        ).labels(**labels)
        self.dead_letters = Counter(
            "plantwire_ingest_dead_letters",
            "Messages stored as dead letters, by reason",
            ["worker", "reason"],
            registry=r,
        )
        self.refusals = Counter(
            "plantwire_ingest_refused",
            "Messages refused because their edge node is not registered or does not own "
            "their device (dead letters only within a quota), by reason",
            ["worker", "reason"],
            registry=r,
        )
        self.rebirths = Counter(
            "plantwire_ingest_rebirth_requests",
            "Rebirth requests (NCMD Node Control/Rebirth) sent",
            ["worker"],
            registry=r,
        ).labels(**labels)
        self.seq_gaps = Counter(
            "plantwire_ingest_seq_gaps", "Sparkplug seq gaps found", ["worker"], registry=r
        ).labels(**labels)
        self.careful_batches = Counter(
            "plantwire_ingest_careful_batches",
            "Batches written through staging because of redelivered or replayed samples",
            ["worker"],
            registry=r,
        ).labels(**labels)
        self.batch_seconds = Histogram(
            "plantwire_ingest_batch_seconds",
            "Time to write and commit one batch",
            ["worker"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        ).labels(**labels)
        self.batch_samples = Histogram(
            "plantwire_ingest_batch_samples",
            "Samples per batch",
            ["worker"],
            buckets=(1, 10, 100, 1000, 5000, 10000, 20000, 50000, 100000),
            registry=r,
        ).labels(**labels)
        self.commit_lag = Gauge(
            "plantwire_ingest_commit_lag_seconds",
            "Last batch: from its first message's arrival to its commit",
            ["worker"],
            registry=r,
        ).labels(**labels)
        self.source_lag = Gauge(
            "plantwire_ingest_source_lag_seconds",
            "Last batch: from its oldest payload timestamp (edge clock) to its commit",
            ["worker"],
            registry=r,
        ).labels(**labels)
        self.parked = Gauge(
            "plantwire_ingest_parked_messages",
            "Data messages waiting for a birth taken by another worker",
            ["worker"],
            registry=r,
        ).labels(**labels)
        self.up = Gauge(
            "plantwire_ingest_dependency_up",
            "1 while the database / the broker is reachable (the worker retries, never exits)",
            ["worker", "dependency"],
            registry=r,
        )
        self.outages = Counter(
            "plantwire_ingest_dependency_outages",
            "Times the database / the broker was lost or could not be reached",
            ["worker", "dependency"],
            registry=r,
        )
        self.commit_confirmations = Counter(
            "plantwire_ingest_commit_confirmations",
            "Commit confirmations published to edge nodes (plantwire extension)",
            ["worker"],
            registry=r,
        ).labels(**labels)
        for dependency in ("database", "broker"):
            self.up.labels(worker, dependency).set(0)
            self.outages.labels(worker, dependency)
        self.worker = worker
        self._children: dict[tuple[int, str], Counter] = {}

    def message(self, kind: str) -> None:
        self._child(self.messages, kind).inc()

    def dependency(self, name: str, up: bool) -> None:
        gauge = self.up.labels(self.worker, name)
        if not up and gauge._value.get() == 1:
            self.outages.labels(self.worker, name).inc()
        gauge.set(1 if up else 0)

    def dead_letter(self, reason: str) -> None:
        self._child(self.dead_letters, reason).inc()

    def refused(self, reason: str) -> None:
        self._child(self.refusals, reason).inc()

    def _child(self, counter: Counter, label: str) -> Counter:
        """``counter``'s child for this worker and ``label``, looked up once (``labels()``
        costs more than the increment, once per message)."""
        key = (id(counter), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(self.worker, label)
        return child

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``GET /metrics`` over HTTP/1.1 on asyncio; everything else is 404."""

    def __init__(self, metrics: IngestMetrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("ingest metrics on http://%s:%d/metrics", self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            line = request.split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] == b"/metrics":
                body, status, ctype = self._metrics.exposition(), b"200 OK", CONTENT_TYPE_LATEST
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", "text/plain"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype.encode()
                + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
