"""Prometheus metrics (process-wide default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "app_http_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "app_http_request_duration_seconds",
    "HTTP request latency by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CACHE_HITS = Counter("app_cache_hits_total", "Document cache hits")
CACHE_MISSES = Counter("app_cache_misses_total", "Document cache misses")
CACHE_ERRORS = Counter("app_cache_errors_total", "Cache operations that failed", ["op"])
PUBLISH_FAILURES = Counter(
    "app_publish_failures_total", "Messages that could not be published", ["kind"]
)
PUBLISHED = Counter("app_published_total", "Messages published with broker confirm", ["kind"])
WORKER_PROCESSED = Counter(
    "app_worker_processed_total", "Index tasks processed by the worker", ["op", "outcome"]
)
WORKER_LAG = Histogram(
    "app_worker_lag_seconds",
    "Time from enqueue to completion of an index task",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
WORKER_LAST_LAG = Gauge("app_worker_last_lag_seconds", "Lag of the most recent index task")
