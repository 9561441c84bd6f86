"""The app verifies Elasticsearch against the platform's internal CA (issue 10).

With elasticsearch hosts in the inventory and internal_ca_dir set, the role copies
internal_ca_dir/ca.crt to the host and the env file points APP_ES_CA_FILE at that
copy; without elasticsearch hosts (or without an internal CA) nothing is copied and
the env file has no APP_ES_CA_FILE line.
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
CA_DIR = "/srv/platform-ca"
ON_HOST = "/etc/aiinfra-app/es-ca.crt"
SECRETS = {
    "app_database_password": "dbdbdbdbdbdbdbdb1",
    "app_redis_password": "redisredisredis123",
    "app_amqp_password": "amqpamqpamqpamqp456",
    "app_api_keys": ["key-one-0123456789"],
}
# case: (elasticsearch hosts, internal_ca_dir or None)
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "es-and-ca": ({"es1": {"platform_address": "192.0.2.31"}}, CA_DIR),
    "no-es": ({}, CA_DIR),
    "es-without-ca": ({"es1": {"platform_address": "192.0.2.31"}}, None),
}


def _inventory(es_hosts: dict[str, Any], ca_dir: str | None) -> dict[str, Any]:
    all_vars: dict[str, Any] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    if ca_dir is not None:
        all_vars["internal_ca_dir"] = ca_dir
    return {
        "all": {
            "vars": all_vars,
            "children": {
                "app": {"hosts": {"a1": {"platform_address": "192.0.2.11", **SECRETS}}},
                "postgres": {"hosts": {"pg": {"platform_address": "192.0.2.21"}}},
                "redis": {"hosts": {"rd": {"platform_address": "192.0.2.22"}}},
                "rabbitmq": {"hosts": {"mq": {"platform_address": "192.0.2.23"}}},
                "elasticsearch": {"hosts": es_hosts},
            },
        }
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, str], str]]:
    """Per case: the APP_* settings of the rendered env file, and app_es_ca_src as the role resolves it."""
    out: dict[str, tuple[dict[str, str], str]] = {}
    for case, (es_hosts, ca_dir) in CASES.items():
        tmp = tmp_path_factory.mktemp(case)
        play = {
            "name": "Render the app's settings",
            "hosts": "a1",
            "gather_facts": True,
            "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
            "vars": {"_app_version": "1.2.3"},
            "tasks": [
                {
                    "name": "app.env",
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / "app.env.j2"),
                        "dest": f"{tmp}/app.env",
                    },
                },
                {
                    "name": "The control-node CA file the role copies",
                    "ansible.builtin.copy": {"content": "{{ app_es_ca_src }}", "dest": f"{tmp}/ca_src"},
                },
            ],
        }
        res = run_playbook(tmp, _inventory(es_hosts, ca_dir), [play], HOME=str(tmp))
        assert res.returncode == 0, res.stdout + res.stderr
        env = dict(re.findall(r'(?m)^(APP_[A-Z0-9_]+)="(.*)"$', (tmp / "app.env").read_text()))
        out[case] = (env, (tmp / "ca_src").read_text())
    return out


def test_with_elasticsearch_and_the_internal_ca_the_app_verifies_against_its_copy(
    rendered: dict[str, tuple[dict[str, str], str]],
) -> None:
    env, ca_src = rendered["es-and-ca"]
    assert env["APP_ES_URL"] == "https://192.0.2.31:9200"
    assert env["APP_ES_CA_FILE"] == ON_HOST
    assert ca_src == f"{CA_DIR}/ca.crt"


def test_without_elasticsearch_hosts_no_ca_file(rendered: dict[str, tuple[dict[str, str], str]]) -> None:
    env, ca_src = rendered["no-es"]
    assert "APP_ES_URL" not in env
    assert "APP_ES_CA_FILE" not in env
    assert ca_src == ""
    assert env["APP_DATABASE_URL"]  # the rest is rendered as usual


def test_without_an_internal_ca_the_system_cas(rendered: dict[str, tuple[dict[str, str], str]]) -> None:
    env, ca_src = rendered["es-without-ca"]
    assert env["APP_ES_URL"] == "https://192.0.2.31:9200"
    assert "APP_ES_CA_FILE" not in env
    assert ca_src == ""
