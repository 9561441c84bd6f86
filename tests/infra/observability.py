"""Helpers for the observability scenario and bench: Prometheus and Alertmanager
HTTP APIs (called with curl on the monitoring host) and the dashboards' queries."""

from __future__ import annotations

import json
import re
import shlex
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from infra import Host

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "roles" / "grafana" / "files" / "dashboards"
PROMETHEUS_PREFIX = "/monitoring/prometheus/"
ALERTMANAGER_PREFIX = "/monitoring/alertmanager/"
# Which scrape job exports a metric, by name prefix (the exporters we deploy).
JOB_OF_PREFIX = {
    "node_": "node",
    "pg_": "postgres",
    "redis_": "redis",
    "rabbitmq_": "rabbitmq",
    "nginx_": "nginx",
    "app_": "app",
    "app_worker_": "app_worker",
    "elasticsearch_": "elasticsearch",
    "prometheus_": "prometheus",
    "alertmanager_": "alertmanager",
}


def get_json(host: Host, url: str) -> Any:
    """GET a URL from the host itself and decode the JSON body; fails on HTTP errors."""
    res = host.run(f"curl -sS --fail --max-time 10 {shlex.quote(url)}")
    assert res.rc == 0, f"GET {url}: {res.stderr}"
    return json.loads(res.stdout)


def prometheus_query(host: Host, base: str, expr: str) -> dict[str, Any]:
    """Run an instant query; returns the API's whole answer (status, data)."""
    answer: dict[str, Any] = get_json(host, f"{base}api/v1/query?query={urllib.parse.quote(expr)}")
    return answer


def active_targets(host: Host, base: str) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = get_json(host, f"{base}api/v1/targets?state=active")["data"]["activeTargets"]
    return targets


def alerts(host: Host, base: str, name: str) -> list[dict[str, Any]]:
    """Active (not silenced, not inhibited) alerts of that name in Alertmanager."""
    found: list[dict[str, Any]] = get_json(host, f"{base}api/v2/alerts?active=true&silenced=false&inhibited=false")
    return [a for a in found if a["labels"].get("alertname") == name]


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 1.0) -> float:
    """Poll until condition() holds; returns the seconds it took, raises TimeoutError after timeout."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"condition not met within {timeout:.0f} s")
        time.sleep(step)


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) for every target of every panel of every dashboard."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield path.name, panel["title"], target["expr"]


def jobs_of(expr: str) -> set[str]:
    """The scrape jobs whose metrics a query reads (by metric name prefix)."""
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[(]?", expr))
    return {job for name in names for prefix, job in JOB_OF_PREFIX.items() if name.startswith(prefix)}
