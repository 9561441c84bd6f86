"""Bad prometheus/alertmanager inputs stop in the roles' preflight entry points with a
message naming the variable and the fix.

One check-mode run of both preflights (`include_role ... tasks_from: preflight`)
against this machine over the local connection, the way playbooks/preflight.yml calls
role preflights: each case is a monitoring host of its own in the inventory and is
read back per host (tests/infra/playbook.py run_batch). Nothing can change here.
"""

from __future__ import annotations

from typing import Any

import pytest
from infra.playbook import BatchRun, assert_passed, assert_stopped, local_hosts, run_batch

GOOD: dict[str, Any] = {
    "platform_address": "127.0.0.2",
    "alertmanager_webhook_url": "https://hooks.example.com/alerts",
}
# The good case's own input: an extra job on a group without hosts.
GOOD_EXTRA: dict[str, Any] = {"prometheus_extra_scrape_jobs": [{"job": "mq2", "group": "rabbitmq", "port": 1}]}
PASSED = "OBSERVABILITY PREFLIGHT PASSED"
PLAY = [
    {
        "name": "Observability preflight",
        "hosts": "monitoring",
        "gather_facts": True,
        "tasks": [
            {
                "name": "Alertmanager inputs",
                "ansible.builtin.include_role": {"name": "aiinfra.platform.alertmanager", "tasks_from": "preflight"},
            },
            {
                "name": "Prometheus inputs",
                "ansible.builtin.include_role": {"name": "aiinfra.platform.prometheus", "tasks_from": "preflight"},
            },
            {"name": "Preflight passed", "ansible.builtin.debug": {"msg": PASSED}},
        ],
    }
]


# case (its own monitoring host) -> host vars over GOOD, and the words its message must have
BAD: dict[str, tuple[dict[str, Any], list[str]]] = {
    "unknown-group": (
        {"prometheus_extra_scrape_jobs": [{"job": "backups", "group": "backupz", "port": 9854}]},
        ["prometheus_extra_scrape_jobs names group(s) backupz", "add the group to the inventory"],
    ),
    "duplicate-job": (
        {"prometheus_extra_scrape_jobs": [{"job": "node", "group": "redis", "port": 9100}]},
        ["Job names repeat", "prometheus_extra_scrape_jobs"],
    ),
    "timeout": (
        {"prometheus_scrape_interval": "10s", "prometheus_scrape_timeout": "30s"},
        ["prometheus_scrape_timeout (30s) is longer than prometheus_scrape_interval (10s)"],
    ),
    "alert-for-key": (
        {"prometheus_alert_for": {"redis_gone": "1m"}},
        ["prometheus_alert_for may only set", "redis_gone"],
    ),
    "prefix": ({"prometheus_route_prefix": "/prometheus"}, ["prometheus_route_prefix (/prometheus)"]),
    "url-scheme": ({"alertmanager_webhook_url": "ftp://hooks.example.com/x"}, ["alertmanager_webhook_url (ftp://"]),
    "url-host": ({"alertmanager_webhook_url": "https:///nohost"}, ["alertmanager_webhook_url (https:///nohost)"]),
    "route": (
        {"alertmanager_route": {"receiver": "pager"}},
        ["alertmanager_route.receiver", "(pager) must be one of them (default)"],
    ),
    "wildcard": ({"platform_address": "0.0.0.0"}, ["alertmanager_listen_address (0.0.0.0)", "not a wildcard"]),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    """One check-mode run: a monitoring host per case, each fails on its own."""
    monitoring = local_hosts({"good": {**GOOD, **GOOD_EXTRA}} | {case: {**GOOD, **hv} for case, (hv, _) in BAD.items()})
    inventory = {
        "all": {
            "children": {
                "monitoring": {"hosts": monitoring},
                "redis": {"hosts": local_hosts({"redis-a": {"platform_address": "127.0.0.3"}})},
                "rabbitmq": {"hosts": {}},
            }
        }
    }
    return run_batch(tmp_path_factory.mktemp("observability"), inventory, PLAY, "--check", "--limit", "monitoring")


def test_good_inputs_pass(run: BatchRun) -> None:
    assert_passed(run, "good", "Preflight passed", PASSED)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_inputs_stop_with_the_variable_named(run: BatchRun, case: str) -> None:
    assert_stopped(run, case, *BAD[case][1], later=["Preflight passed"])
