"""Prometheus metrics, computed from the server's in-memory state at each scrape."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bramble.services.server.core import ClusterServer


class ServerCollector(Collector):
    """Node states, per-node latest telemetry, and the server's own counters."""

    def __init__(self, server: ClusterServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family."""
        server = self.server
        states = Counter(n.health for n in server.nodes.values())
        nodes = GaugeMetricFamily("bramble_nodes", "Registered nodes by health", labels=["state"])
        for state in ("up", "down", "unknown"):
            nodes.add_metric([state], states[state])
        yield nodes
        untrusted = sum(1 for n in server.nodes.values() if not n.record.trusted)
        yield GaugeMetricFamily(
            "bramble_nodes_untrusted", "Registered nodes whose MAC is not in the model", untrusted
        )
        yield GaugeMetricFamily(
            "bramble_model_nodes", "Pis in the cluster model", len(server.model)
        )
        labels = ["node", "bank", "mac"]
        cpu = GaugeMetricFamily("bramble_node_cpu_percent", "Latest CPU use", labels=labels)
        mem = GaugeMetricFamily("bramble_node_mem_used_percent", "Latest memory use", labels=labels)
        temp = GaugeMetricFamily("bramble_node_temp_celsius", "Latest temperature", labels=labels)
        for node in server.nodes.values():
            sample = node.latest
            if sample is None:
                continue
            record = node.record
            values = [record.name or "", str(record.bank or ""), record.mac]
            cpu.add_metric(values, sample.cpu_percent)
            mem.add_metric(values, sample.mem_used_percent)
            if sample.temp_c is not None:
                temp.add_metric(values, sample.temp_c)
        yield from (cpu, mem, temp)
        writer = server.writer
        yield CounterMetricFamily(
            "bramble_telemetry_samples_written", "Samples written to the store", writer.written
        )
        yield CounterMetricFamily(
            "bramble_telemetry_samples_dropped",
            "Samples dropped (store too slow or failing)",
            writer.dropped,
        )
        yield GaugeMetricFamily(
            "bramble_telemetry_pending", "Samples waiting for the next batch", writer.pending
        )
        jobs = CounterMetricFamily("bramble_jobs_finished", "Finished jobs", labels=["state"])
        for state, count in sorted(server.jobs_finished.items()):
            jobs.add_metric([state], count)
        yield jobs
        yield CounterMetricFamily("bramble_beacons_sent", "Beacons broadcast", server.beacons_sent)
        yield GaugeMetricFamily(
            "bramble_health_sweep_seconds",
            "Duration of the last health sweep",
            server.last_sweep_seconds,
        )
        forwarder = server.forwarder
        if forwarder is not None:
            yield CounterMetricFamily(
                "bramble_forwarder_items_sent", "Telemetry items forwarded", forwarder.sent
            )
            yield CounterMetricFamily(
                "bramble_forwarder_items_dropped",
                "Telemetry items dropped from the full forwarder queue",
                forwarder.dropped,
            )
            yield GaugeMetricFamily(
                "bramble_forwarder_queued",
                "Telemetry items waiting to be forwarded",
                forwarder.queued,
            )


def render(server: ClusterServer) -> bytes:
    """The Prometheus text exposition of the server's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    return generate_latest(registry)
