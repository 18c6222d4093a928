"""Prometheus metrics. Under gunicorn (several worker processes) prometheus_client's multiprocess
mode is used: `metalstream serve` sets PROMETHEUS_MULTIPROC_DIR before any worker starts."""
from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest,
                               multiprocess)
from prometheus_client.core import GaugeMetricFamily

REQUESTS = Counter("metalstream_http_requests", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram("metalstream_http_request_duration_seconds", "Time to produce a response (excl. body streaming)",
                    ["route"])
BYTES_SERVED = Counter("metalstream_served_bytes", "Bytes of image and installer files in responses sent",
                       ["kind"])

AUTH_FAILURES = Counter("metalstream_auth_failures", "Requests with a wrong API or agent token", ["kind"])
AUTH_BLOCKS = Counter("metalstream_auth_blocks", "Client addresses blocked after repeated wrong tokens")
AUTH_REFUSED = Counter("metalstream_auth_refused_while_blocked", "Requests refused (429) from a blocked address")
WEBHOOK_DELIVERIES = Counter("metalstream_webhook_deliveries", "Webhook delivery attempts by outcome "
                             "(delivered; retry: failed, will be retried; failed: given up)", ["outcome"])

PHASE_SECONDS = Histogram("metalstream_deployment_phase_duration_seconds", "Time an installer agent spent in each "
                          "phase (from the agent's events: a phase ends when the next begins or the result comes)",
                          ["phase"], buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200))
DEPLOYMENTS_ENDED = Counter("metalstream_deployments_ended", "Deployments that reached a final state", ["state"])
BMC_CALL_SECONDS = Histogram("metalstream_bmc_call_duration_seconds", "BMC calls (each attempt), by driver and "
                             "operation", ["driver", "operation"],
                             buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
BMC_CALL_ERRORS = Counter("metalstream_bmc_call_errors", "Failed BMC call attempts by driver and kind "
                          "(unreachable, auth, bmc_error, timeout)", ["driver", "kind"])
TFTP_REQUESTS = Counter("metalstream_tftp_requests", "TFTP read requests by outcome (sent; refused: no such "
                        "file or an unsafe name; error: refused after an error, see the log)", ["outcome"])


def phase_ended(phase: str, seconds: float) -> None:
    PHASE_SECONDS.labels(phase).observe(max(0.0, seconds))


def deployment_ended(state: str) -> None:
    DEPLOYMENTS_ENDED.labels(state).inc()


def bmc_call(driver: str, operation: str, seconds: float, error_kind: str | None) -> None:
    BMC_CALL_SECONDS.labels(driver, operation).observe(seconds)
    if error_kind is not None:
        BMC_CALL_ERRORS.labels(driver, error_kind).inc()


def tftp_request(outcome: str) -> None:
    TFTP_REQUESTS.labels(outcome).inc()


def auth_failed(kind: str) -> None:
    AUTH_FAILURES.labels(kind).inc()


def auth_blocked() -> None:
    AUTH_BLOCKS.inc()


def auth_refused_while_blocked() -> None:
    AUTH_REFUSED.inc()


def webhook_delivery(outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(route).observe(seconds)


def served(kind: str, nbytes: int | None) -> None:
    if nbytes:
        BYTES_SERVED.labels(kind).inc(nbytes)


class _StateCollector:
    def __init__(self, counts: dict[str, int]):
        self.counts = counts

    def collect(self):
        gauge = GaugeMetricFamily("metalstream_deployments", "Deployments by state", labels=["state"])
        for state, count in self.counts.items():
            gauge.add_metric([state], count)
        yield gauge


def exposition(state_counts: dict[str, int]) -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    states_registry = CollectorRegistry()
    states_registry.register(_StateCollector(state_counts))
    return generate_latest(registry) + generate_latest(states_registry), CONTENT_TYPE_LATEST
