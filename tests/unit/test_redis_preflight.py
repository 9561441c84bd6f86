"""Bad redis inputs stop in the role's preflight entry point with a message naming the fix.

Each case runs `include_role: aiinfra.platform.redis, tasks_from: preflight` in
check mode against this machine over the local connection, the way
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
    "redis_app_password": "a" * 16 + "-app",
    "redis_exporter_password": "e" * 16 + "-exporter",
    "redis_admin_password": "d" * 16 + "-admin",
    "redis_listen_address": "127.0.0.2",
    "redis_memory_mb": 1024,
}
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
            {"name": "Preflight passed", "ansible.builtin.debug": {"msg": "REDIS PREFLIGHT PASSED"}},
        ],
    }
]


def run_preflight(tmp_path: Path, hostvars: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    inventory = {
        "all": {
            "children": {
                "redis": {
                    "hosts": {
                        "redis-a": {
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
    env = ansible_env()
    bindir = str(Path(sys.executable).parent)
    return subprocess.run(
        [f"{bindir}/ansible-playbook", "-i", str(tmp_path / "hosts.yml"), "--check", str(tmp_path / "play.yml")],
        cwd=REPO,
        env=env,
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
    assert "REDIS PREFLIGHT PASSED" not in out
    assert "changed=0" in out, out
    for name in ("redis_app_password", "redis_exporter_password", "redis_admin_password"):
        assert str(GOOD[name]) not in out, "a password reached the output"


def test_good_inputs_pass(tmp_path: Path) -> None:
    res = run_preflight(tmp_path, GOOD)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "REDIS PREFLIGHT PASSED" in res.stdout


def test_missing_password(tmp_path: Path) -> None:
    hostvars = {k: v for k, v in GOOD.items() if k != "redis_exporter_password"}
    assert_stopped(run_preflight(tmp_path, hostvars), "redis_exporter_password")


def test_short_password(tmp_path: Path) -> None:
    res = run_preflight(tmp_path, {**GOOD, "redis_app_password": "too-short"})
    assert_stopped(res, "redis_app_password is missing or shorter than 16 characters")
    assert "too-short" not in res.stdout + res.stderr


def test_maxmemory_larger_than_the_host(tmp_path: Path) -> None:
    res = run_preflight(tmp_path, {**GOOD, "redis_memory_mb": 0, "redis_maxmemory": "64000gb"})
    assert_stopped(res, "maxmemory would be 65536000.0 MiB", "lower redis_maxmemory")


def test_memory_override_larger_than_the_host(tmp_path: Path) -> None:
    assert_stopped(run_preflight(tmp_path, {**GOOD, "redis_memory_mb": 64_000_000}), "redis_memory_mb (64000000)")


def test_floor_above_the_memory_override(tmp_path: Path) -> None:
    res = run_preflight(tmp_path, {**GOOD, "redis_memory_mb": 256})
    assert_stopped(res, "maxmemory would be 512.0 MiB", "has 256 MiB (redis_memory_mb)", "redis_maxmemory_floor_mb")


@pytest.mark.parametrize("value", ["lots", "12 tb", "-5mb"])
def test_maxmemory_that_is_not_a_size(tmp_path: Path, value: str) -> None:
    assert_stopped(run_preflight(tmp_path, {**GOOD, "redis_maxmemory": value}), "is not a Redis size")


def test_wildcard_listen_address(tmp_path: Path) -> None:
    assert_stopped(run_preflight(tmp_path, {**GOOD, "redis_listen_address": "0.0.0.0"}), "redis_listen_address")
