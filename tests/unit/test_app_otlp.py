"""The app role passes Tempo's OTLP endpoint from the inventory (APP_OTLP_ENDPOINT):
the first monitoring host's OTLP/HTTP port when the group has hosts, nothing when it
has none or the inventory turns tracing off; a malformed endpoint stops in preflight.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from infra.playbook import run_playbook

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "app"
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
SECRETS = {
    "app_database_password": "dbdbdbdbdbdbdbdb1",
    "app_redis_password": "redisredisredis123",
    "app_amqp_password": "amqpamqpamqpamqp456",
    "app_api_keys": ["key-one-0123456789"],
}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "off": {"app_otlp_endpoint": ""},
    "no-group": {"app_otlp_group": "nothing"},
    "explicit": {"app_otlp_endpoint": "https://tempo.example.com:4318"},
}


def _inventory() -> dict[str, Any]:
    return {
        "all": {
            "vars": LOCAL,
            "children": {
                "app": {"hosts": {"a1": {"platform_address": "192.0.2.11", **SECRETS}}},
                "monitoring": {
                    "hosts": {"mon-b": {"platform_address": "192.0.2.6"}, "mon-a": {"platform_address": "192.0.2.5"}}
                },
                "postgres": {"hosts": {"pg": {"platform_address": "192.0.2.21"}}},
                "redis": {"hosts": {"rd": {"platform_address": "192.0.2.22"}}},
                "rabbitmq": {"hosts": {"mq": {"platform_address": "192.0.2.23"}}},
            },
        }
    }


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("otlp")
    play = {
        "name": "Render the app's settings",
        "hosts": "a1",
        "gather_facts": True,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "vars": {"_app_version": "1.2.3"},
        "tasks": [
            {
                "name": f"app.env ({variant})",
                "ansible.builtin.template": {
                    "src": str(ROLE / "templates" / "app.env.j2"),
                    "dest": f"{tmp}/{variant}.env",
                },
                "vars": overrides,
            }
            for variant, overrides in VARIANTS.items()
        ],
    }
    res = run_playbook(tmp, _inventory(), [play], HOME=str(tmp))
    assert res.returncode == 0, res.stdout + res.stderr
    return {
        variant: dict(re.findall(r'(?m)^(APP_[A-Z0-9_]+)="(.*)"$', (tmp / f"{variant}.env").read_text()))
        for variant in VARIANTS
    }


def test_endpoint_is_the_first_monitoring_hosts_otlp_http_port(envs: dict[str, dict[str, str]]) -> None:
    # mon-a is the group's first host (the inventory file lists hosts sorted).
    assert envs["default"]["APP_OTLP_ENDPOINT"] == "http://192.0.2.5:4318"
    assert envs["explicit"]["APP_OTLP_ENDPOINT"] == "https://tempo.example.com:4318"


def test_no_endpoint_without_hosts_or_when_off(envs: dict[str, dict[str, str]]) -> None:
    assert "APP_OTLP_ENDPOINT" not in envs["off"]
    assert "APP_OTLP_ENDPOINT" not in envs["no-group"]
    assert envs["off"]["APP_DATABASE_URL"]  # the rest is rendered as usual


def test_malformed_endpoint_stops_in_preflight(tmp_path: Path) -> None:
    inventory = _inventory()
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
