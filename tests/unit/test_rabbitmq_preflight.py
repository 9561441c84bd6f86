"""Bad rabbitmq inputs stop in the role's preflight entry point with a message naming the fix.

One check-mode run of `include_role: aiinfra.platform.rabbitmq, tasks_from: preflight`
against this machine over the local connection, the way playbooks/preflight.yml calls
role preflights: each case is a host of its own in the inventory and is read back per
host (tests/infra/playbook.py run_batch). Nothing can change here.
"""

from __future__ import annotations

from typing import Any

import pytest
from infra.playbook import BatchRun, assert_passed, local_hosts, run_batch
from infra.playbook import assert_stopped as stopped

GOOD: dict[str, Any] = {
    "rabbitmq_erlang_cookie": "c" * 24 + "Cookie",
    "rabbitmq_admin_password": "a" * 16 + "-admin",
    "rabbitmq_app_password": "p" * 16 + "-app",
    "rabbitmq_monitoring_password": "m" * 16 + "-monitoring",
    "rabbitmq_listen_address": "127.0.0.2",
}
SECRETS = ("rabbitmq_erlang_cookie", "rabbitmq_admin_password", "rabbitmq_app_password", "rabbitmq_monitoring_password")
PASSED = "RABBITMQ PREFLIGHT PASSED"
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
            {"name": "Preflight passed", "ansible.builtin.debug": {"msg": PASSED}},
        ],
    }
]
USERS = [
    {
        "name": "reporting",
        "password": "r" * 20,
        "permissions": [{"vhost": "/reports", "configure_priv": "^$", "write_priv": "^$", "read_priv": ".*"}],
    }
]
# host (one per case) -> its host vars
CASES: dict[str, dict[str, Any]] = {
    "good": GOOD,
    **{f"missing-{index}": {k: v for k, v in GOOD.items() if k != name} for index, name in enumerate(SECRETS)},
    "short-password": {**GOOD, "rabbitmq_app_password": "too-short"},
    "cookie": {**GOOD, "rabbitmq_erlang_cookie": "a cookie with spaces in it"},
    "user-vhost": {**GOOD, "rabbitmq_users": USERS},
    "policy-key": {
        **GOOD,
        "rabbitmq_policies": [
            {"vhost": "/app", "name": "ha", "pattern": ".*", "definition": {"ha-mode": "all", "message-ttl": 1000}}
        ],
    },
    "overflow": {
        **GOOD,
        "rabbitmq_policies": [
            {"vhost": "/app", "name": "tasks", "pattern": ".*", "definition": {"overflow": "drop-tail"}}
        ],
    },
    "policy-vhost": {
        **GOOD,
        "rabbitmq_policies": [
            {"vhost": "/nowhere", "name": "ttl", "pattern": ".*", "definition": {"message-ttl": 1000}}
        ],
    },
    "wildcard": {**GOOD, "rabbitmq_listen_address": "0.0.0.0"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    inventory = {"all": {"children": {"rabbitmq": {"hosts": local_hosts(CASES)}}}}
    return run_batch(tmp_path_factory.mktemp("rabbitmq-preflight"), inventory, PLAY, "--check")


def assert_stopped(run: BatchRun, host: str, *needles: str) -> None:
    stopped(run, host, *needles, later=["Preflight passed"])
    for name in SECRETS:
        assert str(GOOD[name]) not in run.output, f"{name} reached the output"


def test_good_inputs_pass(run: BatchRun) -> None:
    assert_passed(run, "good", "Preflight passed", PASSED)


@pytest.mark.parametrize("name", SECRETS)
def test_missing_secret(run: BatchRun, name: str) -> None:
    assert_stopped(run, f"missing-{SECRETS.index(name)}", name)


def test_short_password(run: BatchRun) -> None:
    assert_stopped(run, "short-password", "rabbitmq_app_password is missing or shorter than 16 characters")
    assert "too-short" not in run.output


def test_cookie_that_is_not_one_word(run: BatchRun) -> None:
    assert_stopped(run, "cookie", "rabbitmq_erlang_cookie must be 16 to 255 characters")
    assert "a cookie with spaces" not in run.output


def test_permission_on_an_undeclared_vhost(run: BatchRun) -> None:
    assert_stopped(run, "user-vhost", "rabbitmq_users entry 'reporting'", "undeclared: /reports", "rabbitmq_vhosts")
    assert "r" * 20 not in run.output


def test_unknown_policy_key(run: BatchRun) -> None:
    assert_stopped(run, "policy-key", "rabbitmq_policies entry 'ha' (/app): unknown key(s) ha-mode", "quorum queues")


def test_bad_overflow_value(run: BatchRun) -> None:
    assert_stopped(run, "overflow", "overflow must be one of")


def test_policy_on_an_undeclared_vhost(run: BatchRun) -> None:
    assert_stopped(run, "policy-vhost", "rabbitmq_policies entry 'ttl' uses vhost '/nowhere'")


def test_wildcard_listen_address(run: BatchRun) -> None:
    assert_stopped(run, "wildcard", "rabbitmq_listen_address")
