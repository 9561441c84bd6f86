"""The observability tier, verified by using it: Prometheus scrapes every exporter the
inventory implies, the dashboards' queries return data, and a stopped Redis raises
the RedisDown alert in Alertmanager, which resolves when Redis is back."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
import yaml
from infra import Host, default_address
from infra.lab import address, group, hostvars
from infra.lab import host as lab_host
from infra.observability import (
    ALERTMANAGER_PREFIX,
    PROMETHEUS_PREFIX,
    active_targets,
    alerts,
    dashboard_queries,
    get_json,
    jobs_of,
    prometheus_query,
    wait_for,
)
from infra.playbook import REPO
from infra.redis import APP, as_user

MONITORING = group("monitoring")[0]
REDIS = group("redis")[0]


def expected_jobs() -> dict[str, set[str]]:
    """Every scrape job the prometheus role derives from the lab's groups, and its hosts."""
    defaults = yaml.safe_load((REPO / "roles" / "prometheus" / "defaults" / "main.yml").read_text())
    jobs = {
        job["job"]: set(hostvars() if job["group"] == "all" else group(job["group"]))
        for job in defaults["prometheus_exporter_jobs"]
    }
    jobs.update(prometheus={MONITORING}, alertmanager={MONITORING}, blackbox_exporter={MONITORING})
    # Blackbox probes of the public endpoints through every proxy (instance = the probed URL).
    jobs["blackbox"] = {
        f"https://{address(proxy)}{path}" for proxy in group("proxy") for path in ("/health", "/ready", "/")
    }
    return {job: hosts for job, hosts in jobs.items() if hosts}


# The lab's shortened `for` (inventories/lab/group_vars/monitoring.yml, 30 s) plus
# scrape/evaluation intervals and Alertmanager's group_wait, with room for a
# loaded CI machine.
ALERT_TIMEOUT = 180


@pytest.fixture(scope="module")
def host() -> Host:
    return lab_host(MONITORING)


@pytest.fixture(scope="module")
def prom(host: Host) -> str:
    return f"http://{default_address(host)}:9090{PROMETHEUS_PREFIX}"


@pytest.fixture(scope="module")
def am(host: Host) -> str:
    return f"http://{default_address(host)}:9093{ALERTMANAGER_PREFIX}"


@pytest.fixture(scope="module")
def targets_up(host: Host, prom: str) -> list[dict[str, Any]]:
    """Active targets once every one has been scraped at least once."""
    wait_for(lambda: all(t["health"] == "up" for t in active_targets(host, prom)), timeout=120, step=5)
    return active_targets(host, prom)


def test_services_bind_the_service_address_not_wildcards(host: Host) -> None:
    address = default_address(host)
    assert host.socket(f"tcp://{address}:9090").is_listening
    assert host.socket(f"tcp://{address}:9093").is_listening
    assert host.socket("tcp://127.0.0.1:9093").is_listening
    for port in (9090, 9093, 9094):
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
        assert not host.socket(f"tcp://:::{port}").is_listening


def test_served_under_the_route_prefixes(host: Host, prom: str, am: str) -> None:
    assert host.run(f"curl -sf {prom}-/ready").rc == 0
    assert host.run(f"curl -sf {am}-/ready").rc == 0
    flags = get_json(host, f"{prom}api/v1/status/flags")["data"]
    assert flags["web.external-url"].endswith(PROMETHEUS_PREFIX)
    assert flags["storage.tsdb.retention.time"] == "2d"  # inventories/lab/group_vars/monitoring.yml
    # Nothing answers outside the prefix.
    assert host.run(f"curl -sf http://{default_address(host)}:9090/-/ready").rc != 0


def test_every_scrape_target_from_the_inventory_is_up(targets_up: list[dict[str, Any]]) -> None:
    seen: dict[str, set[str]] = {}
    for target in targets_up:
        seen.setdefault(target["labels"]["job"], set()).add(target["labels"]["instance"])
    assert seen == expected_jobs()
    down = [(t["labels"]["job"], t["labels"]["instance"], t["lastError"]) for t in targets_up if t["health"] != "up"]
    assert not down, f"targets down: {down}"


def test_groups_without_hosts_give_no_job(host: Host, prom: str) -> None:
    config = get_json(host, f"{prom}api/v1/status/config")["data"]["yaml"]
    for job in ("elasticsearch",):  # no host in the lab's elasticsearch group
        assert f"job_name: {job}\n" not in config


def test_blackbox_probes_through_the_proxy_succeed(host: Host, prom: str, targets_up: list[dict[str, Any]]) -> None:
    """The probes' own verdict (TLS verified against the internal CA, /health and /ready answering
    {"status": "ok"}), not only that the exporter answered the scrape."""
    result = prometheus_query(host, prom, 'probe_success{job="blackbox"}')["data"]["result"]
    verdicts = {r["metric"]["instance"]: r["value"][1] for r in result}
    assert verdicts == dict.fromkeys(expected_jobs()["blackbox"], "1"), verdicts


@pytest.mark.parametrize(
    ("module", "target", "verdict"),
    [
        # The SPA answers 200 to any path: only /health's JSON status passes http_status_ok.
        ("http_status_ok", "{proxy}/health", "1"),
        ("http_status_ok", "{proxy}/index.html", "0"),
        ("http_2xx", "{proxy}/", "1"),
        # Port 1 on the monitoring host itself: nothing listens there.
        ("tcp_connect", "127.0.0.1:1", "0"),
    ],
)
def test_blackbox_probes_fail_what_they_should(host: Host, module: str, target: str, verdict: str) -> None:
    """A probe asked of the exporter directly: the failing cases fail, not only the passing ones pass."""
    target = target.format(proxy=f"https://{address(group('proxy')[0])}")
    out = host.check_output(f"curl -fsS 'http://127.0.0.1:9115/probe?module={module}&target={target}'")
    success = [line.split()[-1] for line in out.splitlines() if line.startswith("probe_success ")]
    assert success == [verdict], out


def test_exporters_answer_for_their_service(host: Host, prom: str) -> None:
    for expr in ("redis_up", "pg_up"):
        result = prometheus_query(host, prom, expr)["data"]["result"]
        assert [r["value"][1] for r in result] == ["1"], expr


def test_rules_are_loaded(host: Host, prom: str) -> None:
    groups = get_json(host, f"{prom}api/v1/rules")["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"InstanceDown", "RedisDown", "PostgresDown", "PostgresConnectionsHigh", "HostHighCpu"} <= names
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"])


def test_prometheus_sends_to_alertmanager(host: Host, prom: str) -> None:
    active = get_json(host, f"{prom}api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    assert [a["url"] for a in active] == [f"http://{default_address(host)}:9093{ALERTMANAGER_PREFIX}api/v2/alerts"]


def test_every_dashboard_query_returns_data(host: Host, prom: str, targets_up: list[dict[str, Any]]) -> None:
    """Every PromQL query of every seed dashboard is valid, and those of the jobs the lab
    runs (all but Elasticsearch) return numbers, not NaN, from the live Prometheus: the
    dashboards are proven against real metrics where Grafana itself cannot run.

    A cache hit ratio needs traffic, so the app user reads a key that exists and one
    that does not first; rates need two scrapes after the traffic the earlier tests
    made, so each query gets up to two minutes."""
    data = lab_host(REDIS)
    key = f"obs:{uuid.uuid4().hex}"
    assert as_user(data, APP, "SET", key, "1", "EX", "600") == "OK"
    for _ in range(3):
        assert as_user(data, APP, "GET", key) == "1"
        assert as_user(data, APP, "GET", f"{key}:missing") == ""
    present = {t["labels"]["job"] for t in targets_up}
    queries = list(dashboard_queries())
    checked = [q for q in queries if jobs_of(q[2]) <= present]
    assert len(checked) >= 30, len(checked)
    empty: list[tuple[str, str, str, list[float]]] = []

    def all_answer() -> bool:
        empty.clear()
        for dashboard, panel, expr in queries:
            answer = prometheus_query(host, prom, expr)
            assert answer["status"] == "success", (dashboard, panel, expr, answer)
            values = _numbers(answer)
            if (dashboard, panel, expr) in checked and (not values or any(math.isnan(v) for v in values)):
                empty.append((dashboard, panel, expr, values))
        return not empty

    try:
        wait_for(all_answer, timeout=120, step=10)
    except TimeoutError:
        pytest.fail(f"dashboard queries without data on the lab: {empty}")


def _numbers(answer: dict[str, Any]) -> list[float]:
    return [float(series["value"][1]) for series in answer["data"]["result"]]


def test_stopped_redis_fires_the_alert_and_recovery_resolves_it(host: Host, prom: str, am: str) -> None:
    data = lab_host(REDIS)
    assert not alerts(host, am, "RedisDown")
    try:
        data.run_expect([0], "systemctl stop redis-server")
        wait_for(lambda: bool(alerts(host, am, "RedisDown")), timeout=ALERT_TIMEOUT)
        (alert,) = alerts(host, am, "RedisDown")
        assert alert["labels"]["instance"] == REDIS
        assert alert["labels"]["severity"] == "critical"
        assert alert["status"]["state"] == "active"
    finally:
        data.run_expect([0], "systemctl start redis-server")
    wait_for(lambda: not alerts(host, am, "RedisDown"), timeout=ALERT_TIMEOUT)
    result = prometheus_query(host, prom, 'ALERTS{alertname="RedisDown"}')["data"]["result"]
    assert result == []
