"""Bad redis inputs stop in the role's preflight entry point with a message naming the fix.

One check-mode run of `include_role: aiinfra.platform.redis, tasks_from: preflight`
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
    "redis_app_password": "a" * 16 + "-app",
    "redis_exporter_password": "e" * 16 + "-exporter",
    "redis_admin_password": "d" * 16 + "-admin",
    "redis_listen_address": "127.0.0.2",
    "redis_memory_mb": 1024,
}
PASSED = "REDIS PREFLIGHT PASSED"
PLAY = [
    {
        "name": "Redis preflight",
        "hosts": "redis",
        "gather_facts": True,
        "tasks": [
            {
                "name": "Redis inputs",
                "ansible.builtin.include_role": {"name": "aiinfra.platform.redis", "tasks_from": "preflight"},
            },
            {"name": "Preflight passed", "ansible.builtin.debug": {"msg": PASSED}},
        ],
    }
]
SIZES = ["lots", "12 tb", "-5mb"]
# host (one per case) -> its host vars
CASES: dict[str, dict[str, Any]] = {
    "good": GOOD,
    "missing-password": {k: v for k, v in GOOD.items() if k != "redis_exporter_password"},
    "short-password": {**GOOD, "redis_app_password": "too-short"},
    "maxmemory-too-big": {**GOOD, "redis_memory_mb": 0, "redis_maxmemory": "64000gb"},
    "memory-override-too-big": {**GOOD, "redis_memory_mb": 64_000_000},
    "floor-above-override": {**GOOD, "redis_memory_mb": 256},
    **{f"size-{index}": {**GOOD, "redis_maxmemory": value} for index, value in enumerate(SIZES)},
    "wildcard": {**GOOD, "redis_listen_address": "0.0.0.0"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    inventory = {"all": {"children": {"redis": {"hosts": local_hosts(CASES)}}}}
    return run_batch(tmp_path_factory.mktemp("redis-preflight"), inventory, PLAY, "--check")


def assert_stopped(run: BatchRun, host: str, *needles: str) -> None:
    stopped(run, host, *needles, later=["Preflight passed"])
    for name in ("redis_app_password", "redis_exporter_password", "redis_admin_password"):
        assert str(GOOD[name]) not in run.output, "a password reached the output"


def test_good_inputs_pass(run: BatchRun) -> None:
    assert_passed(run, "good", "Preflight passed", PASSED)


def test_missing_password(run: BatchRun) -> None:
    assert_stopped(run, "missing-password", "redis_exporter_password")


def test_short_password(run: BatchRun) -> None:
    assert_stopped(run, "short-password", "redis_app_password is missing or shorter than 16 characters")
    assert "too-short" not in run.output


def test_maxmemory_larger_than_the_host(run: BatchRun) -> None:
    assert_stopped(run, "maxmemory-too-big", "maxmemory would be 65536000.0 MiB", "lower redis_maxmemory")


def test_memory_override_larger_than_the_host(run: BatchRun) -> None:
    assert_stopped(run, "memory-override-too-big", "redis_memory_mb (64000000)")


def test_floor_above_the_memory_override(run: BatchRun) -> None:
    assert_stopped(
        run,
        "floor-above-override",
        "maxmemory would be 512.0 MiB",
        "has 256 MiB (redis_memory_mb)",
        "redis_maxmemory_floor_mb",
    )


@pytest.mark.parametrize("value", SIZES)
def test_maxmemory_that_is_not_a_size(run: BatchRun, value: str) -> None:
    assert_stopped(run, f"size-{SIZES.index(value)}", "is not a Redis size")


def test_wildcard_listen_address(run: BatchRun) -> None:
    assert_stopped(run, "wildcard", "redis_listen_address")
