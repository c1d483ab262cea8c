"""The gateway's operations endpoint: ``/metrics`` (Prometheus text format) and ``/healthz``
(JSON), served by a minimal asyncio HTTP/1.1 server with no web framework.

Figures are read from the node, the buffer and the adapters when scraped; nothing is added to
the path of a value.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plantwire_edge.adapter import Adapter
from plantwire_edge.config import HttpConfig
from plantwire_edge.node import EdgeNode

log = logging.getLogger(__name__)

PREFIX = "plantwire_edge"
RATE_WINDOW_S = 5.0


class MonitorError(RuntimeError):
    """The operations endpoint cannot listen where the config says."""


class Rates:
    """Values per second per device over the last few seconds."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}
        self.per_second: dict[str, float] = {}

    def sample(self, counts: dict[str, int]) -> None:
        now = time.monotonic()
        for name, count in counts.items():
            last = self._last.get(name)
            if last is None:
                self._last[name] = (now, count)
            elif now - last[0] >= RATE_WINDOW_S:
                self.per_second[name] = (count - last[1]) / (now - last[0])
                self._last[name] = (now, count)


class GatewayCollector(Collector):
    def __init__(self, node: EdgeNode, adapters: Sequence[Adapter], rates: Rates) -> None:
        self.node = node
        self.adapters = adapters
        self.rates = rates

    def collect(self) -> Iterator[Metric]:
        node, buffer = self.node, self.node.buffer
        stats, bstats = node.stats, buffer.stats

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)

        yield gauge("mqtt_connected", "1 while connected to the broker", node.connected.is_set())
        yield gauge(
            "primary_host_online", "1 while the primary host's STATE is online", node.host_online
        )
        yield counter("mqtt_connects", "successful broker connections", stats.connects)
        yield counter(
            "mqtt_connect_failures", "failed broker connection attempts", stats.connect_failures
        )
        yield counter("messages_published", "Sparkplug messages published", stats.published)
        yield counter("births", "NBIRTH messages published", stats.births)
        yield counter("device_deaths", "DDEATH messages published", stats.device_deaths)
        yield counter("values_sent", "values published in DDATA", stats.values_sent)
        yield counter("values_acked", "values acknowledged by the broker", stats.values_acked)
        yield gauge(
            "host_confirms_commits",
            "1: values leave the buffer once the primary host committed them; 0: on the "
            "broker's PUBACK (the host does not confirm commits, or there is none)",
            node.host_commits,
        )
        yield counter(
            "values_committed",
            "values the primary host confirmed as stored",
            stats.values_committed,
        )
        yield counter(
            "commit_timeouts",
            "data messages sent again because the host did not confirm them in time",
            stats.commit_timeouts,
        )
        yield counter(
            "historical_values_sent",
            "values sent from the backlog (is_historical)",
            stats.historical_sent,
        )
        yield counter(
            "values_encode_rejected",
            "buffered values that no longer fit their metric's datatype",
            stats.encode_rejected,
        )
        yield gauge("buffer_durable", "1 if the buffer is on disk", buffer.durable)
        yield gauge("buffer_max_values", "bound of the buffer", buffer.max_values)
        yield gauge("buffer_depth_values", "values waiting for a PUBACK", bstats.depth_values)
        yield gauge("buffer_depth_batches", "batches waiting for a PUBACK", bstats.depth_batches)
        oldest = buffer.oldest_ts()
        age = max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0
        yield gauge("buffer_oldest_age_seconds", "age of the oldest waiting value", age)
        yield counter("buffer_stored_values", "values written to the buffer", bstats.stored_values)
        yield counter(
            "buffer_dropped_values",
            f"values dropped by the overflow policy ({buffer.overflow})",
            bstats.dropped_values,
        )
        yield from self._adapters()

    def _adapters(self) -> Iterator[Metric]:
        families: dict[str, tuple[type[Any], str, str]] = {
            "values": (CounterMetricFamily, "adapter_values", "values reported"),
            "rejected": (
                CounterMetricFamily,
                "adapter_rejected_values",
                "values rejected (bad quality or not convertible)",
            ),
            "malformed": (
                CounterMetricFamily,
                "adapter_malformed_payloads",
                "payloads that could not be parsed",
            ),
            "unmapped": (
                CounterMetricFamily,
                "adapter_unmapped_values",
                "native values missing from their mapping table",
            ),
            "clock_flagged": (
                CounterMetricFamily,
                "adapter_clock_flagged_values",
                "values whose device timestamp was not believable",
            ),
            "reconnects": (CounterMetricFamily, "adapter_reconnects", "reconnection attempts"),
            "recovered": (
                CounterMetricFamily,
                "adapter_recovered_subscriptions",
                "OPC UA subscriptions continued with their queues after a lost session",
            ),
            "backfilled": (
                CounterMetricFamily,
                "adapter_backfilled_values",
                "OPC UA values written while no subscription existed, read from the server's "
                "history",
            ),
        }
        built = {
            attr: cls(f"{PREFIX}_{name}", doc, labels=["device", "kind"])
            for attr, (cls, name, doc) in families.items()
        }
        up = GaugeMetricFamily(
            f"{PREFIX}_adapter_up",
            "1 while the device is connected",
            labels=["device", "kind", "state"],
        )
        rate = GaugeMetricFamily(
            f"{PREFIX}_adapter_values_per_second",
            f"values reported per second (last {RATE_WINDOW_S:.0f} s)",
            labels=["device", "kind"],
        )
        bad = GaugeMetricFamily(
            f"{PREFIX}_bad_points",
            "tags, registers or fields that cannot be read",
            labels=["device", "kind"],
        )
        bad_point = GaugeMetricFamily(
            f"{PREFIX}_bad_point",
            "1 for each point that cannot be read, with the reason",
            labels=["device", "point", "reason"],
        )
        offset = GaugeMetricFamily(
            f"{PREFIX}_adapter_clock_offset_seconds",
            "how far the device's clock is ahead of the gateway's (from the timestamps it "
            "sends; devices that stamp nothing have none)",
            labels=["device", "kind"],
        )
        jumps = CounterMetricFamily(
            f"{PREFIX}_adapter_clock_jumps",
            "times the device's clock offset changed by more than 5 s at once",
            labels=["device", "kind"],
        )
        for adapter in self.adapters:
            st = adapter.status
            labels = [st.device_id, st.kind]
            if st.clock is not None and st.clock.offset_ms is not None:
                offset.add_metric(labels, st.clock.offset_ms / 1000)
                jumps.add_metric(labels, st.clock.jumps)
            for attr, family in built.items():
                family.add_metric(labels, getattr(st, attr))
            up.add_metric([*labels, st.state], st.state == "connected")
            rate.add_metric(labels, self.rates.per_second.get(st.device_id, 0.0))
            bad.add_metric(labels, len(st.bad_points))
            for point, reason in st.bad_points.items():
                bad_point.add_metric([st.device_id, point, reason], 1)
        yield from built.values()
        yield from (up, rate, bad, bad_point, offset, jumps)


def health(node: EdgeNode, adapters: Sequence[Adapter], rates: Rates) -> tuple[int, dict[str, Any]]:
    """HTTP status and body of /healthz: 200 when everything is connected, else 503."""
    devices = [
        {
            "device_id": a.status.device_id,
            "kind": a.status.kind,
            "state": a.status.state,
            "values": a.status.values,
            "values_per_second": round(rates.per_second.get(a.status.device_id, 0.0), 1),
            "rejected": a.status.rejected,
            "bad_points": a.status.bad_points,
            "last_error": a.status.last_error,
        }
        for a in adapters
    ]
    oldest = node.buffer.oldest_ts()
    ok = node.connected.is_set() and all(d["state"] == "connected" for d in devices)
    body = {
        "status": "ok" if ok else "degraded",
        "mqtt": {
            "connected": node.connected.is_set(),
            "primary_host_online": node.host_online,
            "buffer_released_on": "host commit" if node.host_commits else "broker PUBACK",
        },
        "buffer": {
            "durable": node.buffer.durable,
            "depth_values": node.buffer.stats.depth_values,
            "oldest_age_s": round(time.time() - oldest / 1000, 3) if oldest else 0.0,
            "dropped_values": node.buffer.stats.dropped_values,
        },
        "devices": devices,
    }
    return (200 if ok else 503), body


class Monitor:
    """Serves /metrics and /healthz for one gateway."""

    def __init__(self, http: HttpConfig, node: EdgeNode, adapters: Sequence[Adapter]) -> None:
        self.http = http
        self.node = node
        self.adapters = adapters
        self.rates = Rates()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(node, adapters, self.rates))
        self._server: asyncio.Server | None = None
        self._sampler: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> None:
        host, port = self.http.host_port
        try:
            self._server = await asyncio.start_server(self._handle, host, port)
        except OSError as exc:
            raise MonitorError(f"cannot serve /metrics on {host}:{port}: {exc.strerror}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self._sampler = asyncio.get_running_loop().create_task(self._sample())
        log.info("metrics and health on http://%s:%d/metrics and /healthz", host, self.port)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _sample(self) -> None:
        while True:
            self.rates.sample({a.status.device_id: a.status.values for a in self.adapters})
            await asyncio.sleep(1.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = path.split("?", 1)[0]
            if method != "GET":
                status, ctype, body = 405, "text/plain", b"method not allowed\n"
            elif path == "/metrics":
                status, ctype = 200, "text/plain; version=0.0.4; charset=utf-8"
                body = generate_latest(self.registry)
            elif path == "/healthz":
                status, doc = health(self.node, self.adapters, self.rates)
                ctype, body = "application/json", json.dumps(doc).encode()
            else:
                status, ctype, body = 404, "text/plain", b"not found: try /metrics or /healthz\n"
            reason = {
                200: "OK",
                404: "Not Found",
                405: "Method Not Allowed",
                503: "Service Unavailable",
            }[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
