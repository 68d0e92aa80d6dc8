"""The service's Prometheus metrics (``GET /metrics``, text exposition format 0.0.4).

- ``recvec_requests_total{endpoint, method, status}`` requests answered (``endpoint`` is the route
  template, e.g. ``/similar/{item_id}``; paths that match no route count as ``other``)
- ``recvec_request_duration_seconds{endpoint}`` a histogram of the time from the request's arrival
  to the last byte of its answer, in the server
- ``recvec_request_errors_total{endpoint, type}`` refused requests by error type (4xx: validation,
  unknown_id, too_large, ...; ``internal`` for a 5xx)
- ``recvec_requests_in_flight`` requests being answered now
- ``recvec_artifact_info{version, model, index}`` 1 for the artifact served; with
  ``recvec_artifact_loaded_timestamp_seconds`` and ``recvec_artifact_items``
- ``recvec_reloads_total{outcome}`` reloads: reloaded, unchanged, failed

One registry per application. With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set by
``recvec serve --workers N``) the values live in that directory and every worker's ``/metrics``
shows them summed over the workers (gauges per worker, labelled ``pid``).
"""

from __future__ import annotations

import os

#: Latency histogram buckets, seconds (0.1 ms to 10 s).
BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1,
           0.25, 0.5, 1.0, 2.5, 10.0)


def multiprocess_dir() -> str | None:
    """The directory shared by worker processes' metrics, or None (one process)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServeMetrics:
    """The metrics of one application (see the module doc)."""

    def __init__(self):
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()  # no *_created series: they double the exposition and say little here

        self._shared = multiprocess_dir()
        # In multiprocess mode values go to files and are collected from there, not from a registry.
        reg = None if self._shared else CollectorRegistry(auto_describe=True)
        self.registry = reg
        kw = {"registry": reg}
        self.requests = Counter("recvec_requests", "Requests answered.", ["endpoint", "method", "status"], **kw)
        self.latency = Histogram("recvec_request_duration_seconds", "Time from a request's arrival to its answer's "
                                 "last byte, in the server.", ["endpoint"], buckets=BUCKETS, **kw)
        self.errors = Counter("recvec_request_errors", "Refused or failed requests by error type.",
                              ["endpoint", "type"], **kw)
        gauge = (lambda mode: {"multiprocess_mode": mode}) if self._shared else (lambda mode: {})
        self.in_flight = Gauge("recvec_requests_in_flight", "Requests being answered now.", **gauge("livesum"), **kw)
        self.artifact = Gauge("recvec_artifact_info", "1 for the artifact being served.",
                              ["version", "model", "index"], **gauge("liveall"), **kw)
        self.loaded_at = Gauge("recvec_artifact_loaded_timestamp_seconds", "When the served artifact was loaded "
                               "(Unix time).", **gauge("liveall"), **kw)
        self.items = Gauge("recvec_artifact_items", "Items in the served artifact.", **gauge("liveall"), **kw)
        self.reloads = Counter("recvec_reloads", "Reloads by outcome.", ["outcome"], **kw)
        if reg is not None:
            from prometheus_client import (
                GCCollector,
                PlatformCollector,
                ProcessCollector,
            )

            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
            GCCollector(registry=reg)
        self._served: tuple | None = None
        self._children: dict[tuple, tuple] = {}

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a key per call: keep the children
            children = self._children[key] = (self.requests.labels(endpoint, method, str(status)),
                                              self.latency.labels(endpoint))
        children[0].inc()
        children[1].observe(seconds)

    def error(self, endpoint: str, kind: str) -> None:
        """Count one refused or failed request."""
        self.errors.labels(endpoint, kind).inc()

    def served(self, snap) -> None:
        """Record ``snap`` (a holder Snapshot) as the artifact served."""
        labels = (snap.version, snap.loaded.artifact.model_kind, str(snap.manifest.get("index", {}).get("spec", "")))
        if self._served is not None and self._served != labels:
            self.artifact.labels(*self._served).set(0)  # worker files keep a label set: show it as not served
            if not self._shared:
                self.artifact.remove(*self._served)
        self.artifact.labels(*labels).set(1)
        self._served = labels
        self.loaded_at.set(snap.loaded_at)
        self.items.set(len(snap.loaded.recommender.items))

    def reload(self, outcome: str) -> None:
        """Count one reload ("reloaded", "unchanged" or "failed")."""
        self.reloads.labels(outcome).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in the Prometheus text format, and its content type."""
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
        )

        if self._shared:
            from prometheus_client import multiprocess

            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg, path=self._shared)
            return generate_latest(reg), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
