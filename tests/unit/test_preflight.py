"""Bad inventories fail in preflight with a message naming the problem, before any change.

Each case runs the real site.yml in check mode against hosts that use the local
connection, so even a preflight bug could not change this machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from infra.playbook import ansible_env

REPO = Path(__file__).resolve().parents[2]
GOOD_VARS = {
    "ansible_connection": "local",
    "ansible_python_interpreter": sys.executable,
    "platform_admin_networks": ["127.0.0.0/8"],
}


def run_site(tmp_path: Path, inventory: dict[str, object]) -> subprocess.CompletedProcess[str]:
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(inventory))
    env = ansible_env()
    bindir = str(Path(sys.executable).parent)
    return subprocess.run(
        [f"{bindir}/ansible-playbook", "-i", str(inv), "--check", str(REPO / "playbooks" / "site.yml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_stopped_in_preflight(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for needle in needles:
        assert needle in out, out
    assert "Install base packages" not in out, "a role ran after preflight failed"
    assert "changed=1" not in out


def test_host_in_no_group(tmp_path: Path) -> None:
    res = run_site(
        tmp_path, {"all": {"vars": GOOD_VARS, "hosts": {"stray": {}}, "children": {"app": {"hosts": {"app-a": {}}}}}}
    )
    assert_stopped_in_preflight(res, "Hosts in no group: stray")


def test_variable_of_the_wrong_type(tmp_path: Path) -> None:
    res = run_site(
        tmp_path,
        {
            "all": {
                "vars": {**GOOD_VARS, "base_ssh_max_auth_tries": "three"},
                "children": {"app": {"hosts": {"app-a": {}}}},
            }
        },
    )
    assert_stopped_in_preflight(res, "base_ssh_max_auth_tries")


@pytest.mark.parametrize("admin_networks", [None, []])
def test_missing_required_variable(tmp_path: Path, admin_networks: list[str] | None) -> None:
    hostvars = {k: v for k, v in GOOD_VARS.items() if k != "platform_admin_networks"}
    if admin_networks is not None:
        hostvars["platform_admin_networks"] = admin_networks
    res = run_site(tmp_path, {"all": {"vars": hostvars, "children": {"app": {"hosts": {"app-a": {}}}}}})
    assert_stopped_in_preflight(res, "platform_admin_networks is missing or empty")


def test_host_without_a_usable_address(tmp_path: Path) -> None:
    res = run_site(
        tmp_path,
        {
            "all": {
                "vars": GOOD_VARS,
                "children": {"redis": {"hosts": {"redis-a": {"platform_address": "redis.example.internal"}}}},
            }
        },
    )
    assert_stopped_in_preflight(
        res, "platform_address of host 'redis-a' is 'redis.example.internal', not an IP address; set platform_address"
    )


# The app role's required secrets. No monitoring group in these inventories:
# without platform_grafana_stack_enabled false the log shipper would stop first (no Loki).
APP_VARS = {
    "app_database_password": "database-password-0123",
    "app_redis_password": "redis-password-0123",
    "app_amqp_password": "amqp-password-0123",
    "app_api_keys": ["api-key-0123456789"],
    "platform_grafana_stack_enabled": False,
}


def test_app_without_a_postgres_host(tmp_path: Path) -> None:
    res = run_site(
        tmp_path,
        {
            "all": {
                "vars": {**GOOD_VARS, **APP_VARS},
                "children": {"app": {"hosts": {"app-a": {}}}, "redis": {}, "rabbitmq": {}},
            }
        },
    )
    assert_stopped_in_preflight(res, "app_database_host (empty)", "put hosts in the postgres, redis and rabbitmq")


def test_proxy_keepalive_not_below_the_apps(tmp_path: Path) -> None:
    """nginx must close an idle upstream connection before uvicorn does (else a POST can get a 502)."""
    services = {f"app_{name}_host": "127.0.0.1" for name in ("database", "redis", "amqp")}
    res = run_site(
        tmp_path,
        {
            "all": {
                "vars": {**GOOD_VARS, **APP_VARS, **services},
                "children": {
                    "app": {"hosts": {"app-a": {"app_keepalive_timeout": 30}, "app-b": {}}},
                    "proxy": {"hosts": {"proxy-a": {"proxy_tls_source": "selfsigned"}}},
                },
            }
        },
    )
    assert_stopped_in_preflight(
        res,
        "proxy_upstream_keepalive_timeout (60 s) must be below app_keepalive_timeout",
        "app-a has 30 s.",
        "Lower proxy_upstream_keepalive_timeout or raise app_keepalive_timeout",
    )
