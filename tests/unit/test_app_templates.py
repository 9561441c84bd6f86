"""The app role: its templates rendered by Ansible, and its refusals before any change.

Everything runs through ansible-playbook with the local connection; templates go
to a temporary directory, and the refusal cases run the real role in check mode,
failing in preflight before the control node builds anything or a host changes
(one run, an app host per case, read back per host: tests/infra/playbook.py run_batch).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from infra.playbook import BatchRun, assert_passed, assert_stopped, run_batch
from infra.playbook import run_playbook as _run

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "app"
SECRETS = {
    "app_database_password": "db-pass/with:odd@chars%1",
    "app_redis_password": "redisredisredis123",
    "app_amqp_password": "amqpamqpamqpamqp456",
    "app_api_keys": ["key-one-0123456789", "key-two-0123456789"],
}


def _inventory() -> dict[str, Any]:
    return {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "children": {
                "app": {"hosts": {"a1": {"platform_address": "192.0.2.11"}}},
                "proxy": {"hosts": {"px": {"platform_address": "192.0.2.10"}}},
                "postgres": {"hosts": {"pg": {"platform_address": "192.0.2.21"}}},
                "redis": {"hosts": {"rd": {"platform_address": "192.0.2.22"}}},
                "rabbitmq": {"hosts": {"mq": {"platform_address": "192.0.2.23"}}},
            },
        }
    }


def run_playbook(tmp: Path, plays: list[dict[str, Any]], *args: str) -> subprocess.CompletedProcess[str]:
    # the role's default cache dir is under $HOME: keep it in tmp
    return _run(tmp, _inventory(), plays, *args, HOME=str(tmp))


TEMPLATES = ["app.env.j2", "aiinfra-app-api.service.j2", "aiinfra-app-worker.service.j2", "aiinfra-app-restart.j2"]
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "capped": {"app_api_workers_max": 1},
    "fixed": {"app_api_workers": 3, "app_settings_extra": {"cache_ttl_extra": "x y", "APP_LOG_FORMAT": "text"}},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("app")
    tasks = [
        {
            "name": f"Render {template} ({variant})",
            "ansible.builtin.template": {
                "src": str(ROLE / "templates" / template),
                "dest": f"{tmp}/{variant}-{template.removesuffix('.j2')}",
            },
            "vars": overrides,
        }
        for variant, overrides in VARIANTS.items()
        for template in TEMPLATES
    ]
    play = {
        "name": "Render the app role's templates",
        "hosts": "a1",
        "gather_facts": True,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "vars": {**SECRETS, "_app_version": "1.2.3"},
        "tasks": tasks,
    }
    res = run_playbook(tmp, [play])
    assert res.returncode == 0, res.stdout + res.stderr
    return {
        variant: {t.removesuffix(".j2"): (tmp / f"{variant}-{t.removesuffix('.j2')}").read_text() for t in TEMPLATES}
        for variant in VARIANTS
    }


def _env(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.fullmatch(r'(APP_[A-Z0-9_]+)="(.*)"', line)
        if m:
            out[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\\\", "\\")
    return out


def test_env_file_derives_urls_from_the_inventory(rendered: dict[str, dict[str, str]]) -> None:
    env = _env(rendered["default"]["app.env"])
    assert env["APP_DATABASE_URL"] == "postgresql://aiinfra:db-pass%2Fwith%3Aodd%40chars%251@192.0.2.21:5432/aiinfra"
    assert env["APP_REDIS_URL"] == "redis://app:redisredisredis123@192.0.2.22:6379/0"
    assert env["APP_AMQP_URL"] == "amqp://app:amqpamqpamqpamqp456@192.0.2.23:5672/%2Fapp"
    assert env["APP_API_KEYS"] == "key-one-0123456789,key-two-0123456789"
    assert env["APP_HOST"] == "192.0.2.11" and env["APP_PORT"] == "8000"
    assert env["APP_FORWARDED_ALLOW_IPS"] == "127.0.0.1,192.0.2.10"
    assert env["APP_RELEASE"] == "1.2.3"
    assert env["APP_KEEPALIVE_TIMEOUT"] == "75"  # above the proxy's upstream keepalive_timeout (60)
    assert "APP_ES_URL" not in env  # no elasticsearch hosts: PostgreSQL search


def test_workers_follow_the_cpu_count_with_a_cap(rendered: dict[str, dict[str, str]]) -> None:
    cpus = os.cpu_count() or 1
    assert _env(rendered["default"]["app.env"])["APP_WORKERS"] == str(min(cpus, 4))
    assert _env(rendered["capped"]["app.env"])["APP_WORKERS"] == "1"
    assert _env(rendered["fixed"]["app.env"])["APP_WORKERS"] == "3"


def test_extra_settings_are_rendered_last_and_prefixed(rendered: dict[str, dict[str, str]]) -> None:
    lines = rendered["fixed"]["app.env"].strip().splitlines()
    assert lines[-2:] == ['APP_LOG_FORMAT="text"', 'APP_CACHE_TTL_EXTRA="x y"']


@pytest.mark.parametrize("unit", ["aiinfra-app-api.service", "aiinfra-app-worker.service"])
def test_units_are_hardened(rendered: dict[str, dict[str, str]], unit: str) -> None:
    text = rendered["default"][unit]
    for directive in (
        "User=aiinfra-app",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "EnvironmentFile=/etc/aiinfra-app/app.env",
    ):
        assert directive in text, directive
    assert "ExecStart=/opt/aiinfra-app/current/venv/bin/" in text


@pytest.mark.parametrize("unit", ["aiinfra-app-api.service", "aiinfra-app-worker.service"])
def test_units_parse(rendered: dict[str, dict[str, str]], unit: str, tmp_path: Path) -> None:
    path = tmp_path / unit
    path.write_text(rendered["default"][unit])
    res = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False)
    # The ExecStart binary does not exist here; any other complaint is a unit error.
    problems = [
        line
        for line in res.stderr.splitlines()
        if line.strip() and "is not executable" not in line and "No such file" not in line and "Command " not in line
    ]
    assert not problems, res.stderr


def test_restart_helper_waits_for_ready(rendered: dict[str, dict[str, str]]) -> None:
    text = rendered["default"]["aiinfra-app-restart"]
    assert 'ready_url="http://192.0.2.11:8000/ready"' in text
    assert text.index("systemctl restart aiinfra-app-api.service") < text.index(
        'until curl -fsS --max-time 3 -o /dev/null "$ready_url"'
    )
    res = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


# --- refusals: before anything is built or changed ---------------------------

# Tasks of the role after its preflight: none may start for a refused host.
LATER = (
    "Control-node cache directories",
    "Build the app wheel",
    "Install Python venv and what the pip module needs",
    "Environment file",
)
PASSED = "APP PREFLIGHT PASSED"
# refused case (an app host of its own) -> its app variables, and what its message must say
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    **{
        f"missing-{index}": ({k: v for k, v in SECRETS.items() if k != missing}, missing)
        for index, missing in enumerate(["app_amqp_password", "app_api_keys"])
    },
    "short-secret": (
        {**SECRETS, "app_redis_password": "short"},
        "app_redis_password is missing or shorter than 16 characters",
    ),
    "no-such-version": ({**SECRETS, "app_version": "9.9.9"}, "app_version 9.9.9 does not exist"),
}


def _refusal_run(tmp: Path, cases: dict[str, dict[str, Any]], good: dict[str, Any], *args: str) -> BatchRun:
    """The real role on each case's host (its variables as host vars), and its preflight alone on `good`'s."""
    inventory = _inventory()
    app = inventory["all"]["children"]["app"]["hosts"]
    for index, (host, app_vars) in enumerate({**cases, **good}.items()):
        app[host] = {"platform_address": f"192.0.2.{111 + index}", **app_vars}
    # The good play first: a play in which every host fails ends the playbook.
    plays: list[dict[str, Any]] = []
    if good:
        plays.append(
            {
                "name": "App preflight",
                "hosts": ":".join(good),
                "gather_facts": True,
                "tasks": [
                    {
                        "name": "App",
                        "ansible.builtin.include_role": {"name": "aiinfra.platform.app", "tasks_from": "preflight"},
                    },
                    {"name": "Preflight passed", "ansible.builtin.debug": {"msg": PASSED}},
                ],
            }
        )
    plays.append(
        {
            "name": "App role",
            "hosts": ":".join(cases),
            "gather_facts": True,
            "tasks": [{"name": "App", "ansible.builtin.include_role": {"name": "aiinfra.platform.app"}}],
        }
    )
    # the role's default cache dir is under $HOME: keep it in tmp
    return run_batch(tmp, inventory, plays, *args, HOME=str(tmp))


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    """One check-mode run: the real role for each refused case, the preflight alone for good input."""
    cases = {host: app_vars for host, (app_vars, _) in REFUSED.items()}
    return _refusal_run(tmp_path_factory.mktemp("app-refusals"), cases, {"good": SECRETS}, "--check")


@pytest.mark.parametrize("missing", ["app_amqp_password", "app_api_keys"])
def test_refuses_a_missing_secret(refusals: BatchRun, missing: str) -> None:
    host = next(host for host, (_, needle) in REFUSED.items() if needle == missing)
    assert_stopped(refusals, host, missing, later=LATER)


def test_refuses_a_short_secret(refusals: BatchRun) -> None:
    assert_stopped(refusals, "short-secret", REFUSED["short-secret"][1], later=LATER)


def test_refuses_a_version_that_does_not_exist(refusals: BatchRun) -> None:
    assert_stopped(refusals, "no-such-version", REFUSED["no-such-version"][1], later=LATER)


def test_refuses_a_wheel_that_does_not_exist(tmp_path: Path) -> None:
    """Not in check mode: a real run stops in preflight too (a run of its own)."""
    wheel = {**SECRETS, "app_wheel": "/nonexistent/aiinfra_app-1.0-py3-none-any.whl"}
    res = _refusal_run(tmp_path, {"no-such-wheel": wheel}, {})
    assert_stopped(
        res, "no-such-wheel", "app_wheel /nonexistent/aiinfra_app-1.0-py3-none-any.whl does not exist", later=LATER
    )


def test_preflight_accepts_good_input(refusals: BatchRun) -> None:
    """The refusals above are not an always-failing preflight."""
    assert_passed(refusals, "good", "Preflight passed", PASSED)
