"""Rendering the app role's env file (roles/app/templates/app.env.j2) on the control node
for a made-up inventory, the way the role resolves its defaults and vars."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from infra.playbook import REPO, run_playbook

ROLE = REPO / "roles" / "app"
TEMPLATE = ROLE / "templates" / "app.env.j2"
SECRETS = {
    "app_database_password": "dbdbdbdbdbdbdbdb1",
    "app_redis_password": "redisredisredis123",
    "app_amqp_password": "amqpamqpamqpamqp456",
    "app_api_keys": ["key-one-0123456789"],
}


def inventory(groups: Mapping[str, Mapping[str, Any]], **all_vars: Any) -> dict[str, Any]:
    """App host a1 with its secrets, the data tier it needs, plus `groups` (name: hosts)."""
    children: dict[str, Any] = {
        "app": {"hosts": {"a1": {"platform_address": "192.0.2.11", **SECRETS}}},
        "postgres": {"hosts": {"pg": {"platform_address": "192.0.2.21"}}},
        "redis": {"hosts": {"rd": {"platform_address": "192.0.2.22"}}},
        "rabbitmq": {"hosts": {"mq": {"platform_address": "192.0.2.23"}}},
    }
    children.update({name: {"hosts": dict(hosts)} for name, hosts in groups.items()})
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    return {"all": {"vars": {**local, **all_vars}, "children": children}}


def render(
    tmp: Path,
    hosts: dict[str, Any],
    variants: Mapping[str, Mapping[str, Any]],
    extra_tasks: Iterable[dict[str, Any]] = (),
) -> dict[str, dict[str, str]]:
    """The APP_* settings of the env file rendered on a1 once per variant (task vars), by name."""
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
                "vars": dict(overrides),
            }
            for variant, overrides in variants.items()
        ]
        + list(extra_tasks),
    }
    res = run_playbook(tmp, hosts, [play], HOME=str(tmp))
    assert res.returncode == 0, res.stdout + res.stderr
    return {
        variant: dict(re.findall(r'(?m)^(APP_[A-Z0-9_]+)="(.*)"$', (tmp / f"{variant}.env").read_text()))
        for variant in variants
    }
