"""The proxy role's nginx.conf, rendered by Ansible from the real role files.

One ansible-playbook run (local connection, nothing on this machine changes but
files in a temporary directory) renders the template for several inventories;
the tests read the results. `nginx -t` on the rendered files runs in the `app`
Molecule scenario, where nginx exists; here: the structure the roles promise.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from infra.playbook import BatchRun, assert_stopped, run_batch
from infra.playbook import run_playbook as _run

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "proxy"
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "drained": {"proxy_app_drain": ["a1"]},
    "monitoring": {"proxy_monitoring_group": "monitoring"},
    "noapp": {"proxy_app_group": "nosuchgroup"},
    "trixie": {"_proxy_http2_directive": True},
    "bookworm": {"_proxy_http2_directive": False},
}


def _inventory() -> dict[str, Any]:
    return {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "children": {
                "proxy": {"hosts": {"px": {"platform_address": "192.0.2.10"}}},
                "app": {"hosts": {"a1": {"platform_address": "192.0.2.11"}, "a2": {"platform_address": "192.0.2.12"}}},
                "monitoring": {"hosts": {"mon": {"platform_address": "192.0.2.30"}}},
            },
        }
    }


def run_playbook(tmp: Path, plays: list[dict[str, Any]], *args: str) -> subprocess.CompletedProcess[str]:
    return _run(tmp, _inventory(), plays, *args)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("proxy")
    tasks = [
        {
            "name": f"Render {name}",
            "ansible.builtin.template": {
                "src": str(ROLE / "templates" / "nginx.conf.j2"),
                "dest": f"{tmp}/{name}.conf",
            },
            "vars": {"proxy_monitoring_group": "nosuchgroup", **overrides},
        }
        for name, overrides in VARIANTS.items()
    ]
    play = {
        "name": "Render nginx.conf variants",
        "hosts": "px",
        "gather_facts": True,
        "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
        "tasks": tasks,
    }
    res = run_playbook(tmp, [play])
    assert res.returncode == 0, res.stdout + res.stderr
    return {name: (tmp / f"{name}.conf").read_text() for name in VARIANTS}


def _block(conf: str, header: str) -> str:
    """The text of the first `header { ... }` block (braces balanced)."""
    start = conf.index(header)
    depth = 0
    for pos in range(conf.index("{", start), len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[pos], 0)
        if depth == 0:
            return conf[start : pos + 1]
    raise AssertionError(f"unbalanced block {header}")


def test_upstream_has_every_app_host(rendered: dict[str, str]) -> None:
    upstream = _block(rendered["plain"], "upstream aiinfra_app")
    servers = re.findall(r"server (\S+) (.*);", upstream)
    assert [s[0] for s in servers] == ["192.0.2.11:8000", "192.0.2.12:8000"]
    assert all("max_fails=3 fail_timeout=10s" in s[1] and "down" not in s[1] for s in servers)
    assert "keepalive 32;" in upstream
    assert "keepalive_timeout 60s;" in upstream  # below the app's APP_KEEPALIVE_TIMEOUT (75)


def test_drained_host_is_down_and_the_other_stays(rendered: dict[str, str]) -> None:
    upstream = _block(rendered["drained"], "upstream aiinfra_app")
    assert re.search(r"server 192\.0\.2\.11:8000 [^;]* down;", upstream)
    assert not re.search(r"server 192\.0\.2\.12:8000 [^;]* down;", upstream)


def test_routes(rendered: dict[str, str]) -> None:
    conf = rendered["plain"]
    spa = _block(conf, "location / {\n            try_files")
    assert "try_files $uri $uri/ /index.html;" in spa
    assets = _block(conf, "location /assets/")
    assert 'Cache-Control "public, max-age=31536000, immutable"' in assets
    assert "expires 1y;" in assets
    api = _block(conf, "location /api/")
    assert "proxy_pass http://aiinfra_app;" in api
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in api
    assert "non_idempotent" not in api  # POST is never replayed on another host
    assert "proxy_pass http://aiinfra_app/health;" in _block(conf, "location = /health")
    assert "/monitoring/" not in conf  # no monitoring hosts in this variant


def test_monitoring_routes_only_with_monitoring_hosts(rendered: dict[str, str]) -> None:
    conf = rendered["monitoring"]
    grafana = _block(conf, "location /monitoring/grafana/")
    assert "proxy_pass http://192.0.2.30:3000;" in grafana
    assert "proxy_set_header Upgrade $http_upgrade;" in grafana
    assert "proxy_set_header Connection $connection_upgrade;" in grafana
    assert "proxy_pass http://192.0.2.30:9090;" in _block(conf, "location /monitoring/prometheus/")
    assert "proxy_pass http://192.0.2.30:3200/;" in _block(conf, "location /monitoring/tempo/")
    assert "proxy_pass http://192.0.2.30:3100/;" in _block(conf, "location /monitoring/loki/")


def test_no_app_hosts_renders_no_empty_upstream(rendered: dict[str, str]) -> None:
    conf = rendered["noapp"]
    assert "upstream aiinfra_app" not in conf
    assert "return 503" in _block(conf, "location /api/")


def test_binds_service_address_and_loopback_only(rendered: dict[str, str]) -> None:
    listens = re.findall(r"^\s*listen (\S+?)[;\s]", rendered["plain"], re.MULTILINE)
    assert sorted(set(listens)) == sorted(
        {"127.0.0.1:80", "192.0.2.10:80", "127.0.0.1:443", "192.0.2.10:443", "127.0.0.1:8080"}
    )
    redirect = _block(rendered["plain"], "server {")
    assert "return 301 https://$host$request_uri;" in redirect


def test_tls_gzip_json_logs_and_stub_status(rendered: dict[str, str]) -> None:
    conf = rendered["plain"]
    assert "ssl_certificate /etc/nginx/tls/proxy.crt;" in conf
    assert "gzip on;" in conf and "application/javascript" in conf
    assert "log_format json escape=json" in conf and "access_log /var/log/nginx/access.log json;" in conf
    status = _block(conf, "location = /stub_status")
    assert "stub_status;" in status and "allow 127.0.0.1;" in status and "deny all;" in status
    includes = re.findall(r"^\s*include (\S+);", conf, re.MULTILINE)
    assert includes == ["/etc/nginx/modules-enabled/*.conf", "/etc/nginx/mime.types"]


def test_http2_syntax_follows_the_nginx_version(rendered: dict[str, str]) -> None:
    assert "http2 on;" in rendered["trixie"] and "ssl http2;" not in rendered["trixie"]
    assert "listen 192.0.2.10:443 ssl http2;" in rendered["bookworm"] and "http2 on;" not in rendered["bookworm"]


DRAINS = [(["a1", "a2"], "leave at least one in rotation"), (["nope"], "unknown: nope")]


@pytest.fixture(scope="module")
def drain_preflight(tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    """One check-mode run of the preflight: a proxy host per bad drain list."""
    tmp = tmp_path_factory.mktemp("proxy-preflight")
    inventory = _inventory()
    proxies = inventory["all"]["children"]["proxy"]["hosts"]
    for index, (drain, _) in enumerate(DRAINS):
        proxies[f"drain-{index}"] = {
            "platform_address": f"192.0.2.{20 + index}",
            "proxy_app_drain": drain,
            "proxy_tls_source": "selfsigned",
        }
    play = {
        "name": "Proxy preflight",
        "hosts": ":".join(f"drain-{index}" for index in range(len(DRAINS))),
        "gather_facts": True,
        "tasks": [
            {
                "name": "Preflight",
                "ansible.builtin.include_role": {"name": "aiinfra.platform.proxy", "tasks_from": "preflight"},
            }
        ],
    }
    return run_batch(tmp, inventory, [play], "--check")


@pytest.mark.parametrize(("drain", "needle"), DRAINS)
def test_preflight_refuses_a_bad_drain_list(drain_preflight: BatchRun, drain: list[str], needle: str) -> None:
    assert_stopped(drain_preflight, f"drain-{DRAINS.index((drain, needle))}", "proxy_app_drain", needle)
