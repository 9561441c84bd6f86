"""The app role passes Tempo's OTLP endpoint from the inventory (APP_OTLP_ENDPOINT):
the first monitoring host's OTLP/HTTP port when the group has hosts, nothing when it
has none or the inventory turns tracing off; a malformed endpoint stops in preflight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from infra import app_env
from infra.playbook import run_playbook

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "off": {"app_otlp_endpoint": ""},
    "no-group": {"app_otlp_group": "nothing"},
    "explicit": {"app_otlp_endpoint": "https://tempo.example.com:4318"},
}
MONITORING = {"mon-b": {"platform_address": "192.0.2.6"}, "mon-a": {"platform_address": "192.0.2.5"}}


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("otlp")
    return app_env.render(tmp, app_env.inventory({"monitoring": MONITORING}), VARIANTS)


def test_endpoint_is_the_first_monitoring_hosts_otlp_http_port(envs: dict[str, dict[str, str]]) -> None:
    # mon-a is the group's first host (the inventory file lists hosts sorted).
    assert envs["default"]["APP_OTLP_ENDPOINT"] == "http://192.0.2.5:4318"
    assert envs["explicit"]["APP_OTLP_ENDPOINT"] == "https://tempo.example.com:4318"


def test_no_endpoint_without_hosts_or_when_off(envs: dict[str, dict[str, str]]) -> None:
    assert "APP_OTLP_ENDPOINT" not in envs["off"]
    assert "APP_OTLP_ENDPOINT" not in envs["no-group"]
    assert envs["off"]["APP_DATABASE_URL"]  # the rest is rendered as usual


def test_malformed_endpoint_stops_in_preflight(tmp_path: Path) -> None:
    inventory = app_env.inventory({"monitoring": MONITORING})
    inventory["all"]["children"]["app"]["hosts"]["a1"]["app_otlp_endpoint"] = "tempo:4318"
    plays = [
        {
            "name": "App preflight",
            "hosts": "app",
            "gather_facts": True,
            "tasks": [
                {
                    "name": "App inputs",
                    "ansible.builtin.include_role": {"name": "aiinfra.platform.app", "tasks_from": "preflight"},
                }
            ],
        }
    ]
    res = run_playbook(tmp_path, inventory, plays, "--check", HOME=str(tmp_path))
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode != 0, out
    assert "app_otlp_endpoint (tempo:4318) must be Tempo's OTLP/HTTP URL" in out
    assert "changed=0" in out
