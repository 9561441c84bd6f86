"""Bad rabbitmq inputs stop in the role's preflight entry point with a message naming the fix.

Each case runs `include_role: aiinfra.platform.rabbitmq, tasks_from: preflight`
in check mode against this machine over the local connection, the way
playbooks/preflight.yml calls role preflights: nothing can change here.
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
    "rabbitmq_erlang_cookie": "c" * 24 + "Cookie",
    "rabbitmq_admin_password": "a" * 16 + "-admin",
    "rabbitmq_app_password": "p" * 16 + "-app",
    "rabbitmq_monitoring_password": "m" * 16 + "-monitoring",
    "rabbitmq_listen_address": "127.0.0.2",
}
SECRETS = ("rabbitmq_erlang_cookie", "rabbitmq_admin_password", "rabbitmq_app_password", "rabbitmq_monitoring_password")
PLAY = [
    {
        "name": "RabbitMQ preflight",
        "hosts": "rabbitmq",
        "gather_facts": True,
        "tasks": [
            {
                "name": "RabbitMQ inputs",
                "ansible.builtin.include_role": {"name": "aiinfra.platform.rabbitmq", "tasks_from": "preflight"},
            },
            {"name": "Preflight passed", "ansible.builtin.debug": {"msg": "RABBITMQ PREFLIGHT PASSED"}},
        ],
    }
]


def run_preflight(tmp_path: Path, hostvars: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    inventory = {
        "all": {
            "children": {
                "rabbitmq": {
                    "hosts": {
                        "mq-a": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            **hostvars,
                        }
                    }
                }
            }
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    bindir = str(Path(sys.executable).parent)
    return subprocess.run(
        [f"{bindir}/ansible-playbook", "-i", str(tmp_path / "hosts.yml"), "--check", str(tmp_path / "play.yml")],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_stopped(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for needle in needles:
        assert needle in out, out
    assert "RABBITMQ PREFLIGHT PASSED" not in out
    assert "changed=0" in out, out
    for name in SECRETS:
        assert str(GOOD[name]) not in out, f"{name} reached the output"


def test_good_inputs_pass(tmp_path: Path) -> None:
    res = run_preflight(tmp_path, GOOD)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "RABBITMQ PREFLIGHT PASSED" in res.stdout


@pytest.mark.parametrize("name", SECRETS)
def test_missing_secret(tmp_path: Path, name: str) -> None:
    hostvars = {k: v for k, v in GOOD.items() if k != name}
    assert_stopped(run_preflight(tmp_path, hostvars), name)


def test_short_password(tmp_path: Path) -> None:
    res = run_preflight(tmp_path, {**GOOD, "rabbitmq_app_password": "too-short"})
    assert_stopped(res, "rabbitmq_app_password is missing or shorter than 16 characters")
    assert "too-short" not in res.stdout + res.stderr


def test_cookie_that_is_not_one_word(tmp_path: Path) -> None:
    res = run_preflight(tmp_path, {**GOOD, "rabbitmq_erlang_cookie": "a cookie with spaces in it"})
    assert_stopped(res, "rabbitmq_erlang_cookie must be 16 to 255 characters")
    assert "a cookie with spaces" not in res.stdout + res.stderr


def test_permission_on_an_undeclared_vhost(tmp_path: Path) -> None:
    users = [
        {
            "name": "reporting",
            "password": "r" * 20,
            "permissions": [{"vhost": "/reports", "configure_priv": "^$", "write_priv": "^$", "read_priv": ".*"}],
        }
    ]
    res = run_preflight(tmp_path, {**GOOD, "rabbitmq_users": users})
    assert_stopped(res, "rabbitmq_users entry 'reporting'", "undeclared: /reports", "rabbitmq_vhosts")
    assert "r" * 20 not in res.stdout + res.stderr


def test_unknown_policy_key(tmp_path: Path) -> None:
    policies = [{"vhost": "/app", "name": "ha", "pattern": ".*", "definition": {"ha-mode": "all", "message-ttl": 1000}}]
    res = run_preflight(tmp_path, {**GOOD, "rabbitmq_policies": policies})
    assert_stopped(res, "rabbitmq_policies entry 'ha' (/app): unknown key(s) ha-mode", "quorum queues")


def test_bad_overflow_value(tmp_path: Path) -> None:
    policies = [{"vhost": "/app", "name": "tasks", "pattern": ".*", "definition": {"overflow": "drop-tail"}}]
    assert_stopped(run_preflight(tmp_path, {**GOOD, "rabbitmq_policies": policies}), "overflow must be one of")


def test_policy_on_an_undeclared_vhost(tmp_path: Path) -> None:
    policies = [{"vhost": "/nowhere", "name": "ttl", "pattern": ".*", "definition": {"message-ttl": 1000}}]
    res = run_preflight(tmp_path, {**GOOD, "rabbitmq_policies": policies})
    assert_stopped(res, "rabbitmq_policies entry 'ttl' uses vhost '/nowhere'")


def test_wildcard_listen_address(tmp_path: Path) -> None:
    res = run_preflight(tmp_path, {**GOOD, "rabbitmq_listen_address": "0.0.0.0"})
    assert_stopped(res, "rabbitmq_listen_address")
