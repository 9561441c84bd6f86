"""Bad prometheus/alertmanager inputs stop in the roles' preflight entry points with a
message naming the variable and the fix.

Each case runs both preflights (`include_role ... tasks_from: preflight`) in check
mode against this machine over the local connection, the way playbooks/preflight.yml
calls role preflights: nothing can change here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.playbook import ansible_env

REPO = Path(__file__).resolve().parents[2]
GOOD: dict[str, Any] = {
    "platform_address": "127.0.0.2",
    "alertmanager_webhook_url": "https://hooks.example.com/alerts",
}
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
            {"name": "Preflight passed", "ansible.builtin.debug": {"msg": "OBSERVABILITY PREFLIGHT PASSED"}},
        ],
    }
]


def run_preflight(tmp_path: Path, hostvars: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {
        "all": {
            "children": {
                "monitoring": {"hosts": {"mon-a": {**local, **GOOD, **hostvars}}},
                "redis": {"hosts": {"redis-a": {**local, "platform_address": "127.0.0.3"}}},
                "rabbitmq": {"hosts": {}},
            }
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    bindir = str(Path(sys.executable).parent)
    return subprocess.run(
        [
            f"{bindir}/ansible-playbook",
            "-i",
            str(tmp_path / "hosts.yml"),
            "--limit",
            "monitoring",
            "--check",
            str(tmp_path / "play.yml"),
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_good_inputs_pass(tmp_path: Path) -> None:
    res = run_preflight(tmp_path, {"prometheus_extra_scrape_jobs": [{"job": "mq2", "group": "rabbitmq", "port": 1}]})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "OBSERVABILITY PREFLIGHT PASSED" in out


@pytest.mark.parametrize(
    ("hostvars", "needles"),
    [
        (
            {"prometheus_extra_scrape_jobs": [{"job": "backups", "group": "backupz", "port": 9854}]},
            ["prometheus_extra_scrape_jobs names group(s) backupz", "add the group to the inventory"],
        ),
        (
            {"prometheus_extra_scrape_jobs": [{"job": "node", "group": "redis", "port": 9100}]},
            ["Job names repeat", "prometheus_extra_scrape_jobs"],
        ),
        (
            {"prometheus_scrape_interval": "10s", "prometheus_scrape_timeout": "30s"},
            ["prometheus_scrape_timeout (30s) is longer than prometheus_scrape_interval (10s)"],
        ),
        ({"prometheus_alert_for": {"redis_gone": "1m"}}, ["prometheus_alert_for may only set", "redis_gone"]),
        ({"prometheus_route_prefix": "/prometheus"}, ["prometheus_route_prefix (/prometheus)"]),
        ({"alertmanager_webhook_url": "ftp://hooks.example.com/x"}, ["alertmanager_webhook_url (ftp://"]),
        ({"alertmanager_webhook_url": "https:///nohost"}, ["alertmanager_webhook_url (https:///nohost)"]),
        (
            {"alertmanager_route": {"receiver": "pager"}},
            ["alertmanager_route.receiver", "(pager) must be one of them (default)"],
        ),
        ({"platform_address": "0.0.0.0"}, ["alertmanager_listen_address (0.0.0.0)", "not a wildcard"]),
    ],
    ids=[
        "unknown-group",
        "duplicate-job",
        "timeout",
        "alert-for-key",
        "prefix",
        "url-scheme",
        "url-host",
        "route",
        "wildcard",
    ],
)
def test_bad_inputs_stop_with_the_variable_named(tmp_path: Path, hostvars: dict[str, Any], needles: list[str]) -> None:
    res = run_preflight(tmp_path, hostvars)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for needle in needles:
        assert needle in " ".join(out.split()), out
    assert "OBSERVABILITY PREFLIGHT PASSED" not in out
    assert "changed=0" in out, out
