"""The application tier on the lab, used through nginx on the proxy.

Requests go from the proxy host (curl, verified against the internal CA) or from
the control node (Python, verified against the CA); metrics and readiness are
read on the app hosts themselves.
"""

from __future__ import annotations

import json
import re
import shlex
import time
import uuid
from typing import Any

import pytest
from infra import Host
from infra.lab import address, ca_file, group, host, https, proxy_base, secret

PROXY_HOST = group("proxy")[0]
PROXY = address(PROXY_HOST)
APP_HOSTS = {name: address(name) for name in group("app")}
BASE = proxy_base()


@pytest.fixture(scope="module")
def proxy() -> Host:
    return host(PROXY_HOST)


@pytest.fixture(scope="module")
def api_key() -> str:
    return secret("app_api_key")


def curl(proxy: Host, *args: str) -> Any:
    """curl on the proxy host, TLS verified with the CA the proxy role installed."""
    quoted = " ".join(shlex.quote(a) for a in args)
    return proxy.run(f"curl -sS --max-time 10 --cacert /etc/nginx/tls/ca.crt {quoted}")


def create_document(api_key: str, title: str, body: str) -> dict[str, Any]:
    status, _, raw = https(
        "POST", f"{BASE}/api/documents", {"title": title, "body": body, "tags": ["lab"]}, {"X-API-Key": api_key}
    )
    assert status == 201, raw
    doc: dict[str, Any] = json.loads(raw)
    return doc


def cache_hits() -> float:
    """app_cache_hits_total summed over the app hosts.

    Each uvicorn process keeps its own counters (no multiprocess mode), so the lab
    runs one worker per host (inventories/lab/group_vars/app.yml): a host's /metrics
    is then its whole count.
    """
    total = 0.0
    for name, addr in APP_HOSTS.items():
        workers = host(name).check_output("grep -oP '^APP_WORKERS=.?\\K\\d+' /etc/aiinfra-app/app.env")
        assert workers == "1", f"{name} runs {workers} uvicorn workers: its /metrics would show one of them"
        text = host(name).check_output(f"curl -fsS --max-time 5 http://{addr}:8000/metrics")
        count = re.search(r"^app_cache_hits_total (\S+)$", text, re.MULTILINE)
        assert count, text
        total += float(count.group(1))
    return total


def ready(name: str) -> tuple[int, dict[str, Any]]:
    out = host(name).check_output(f"curl -sS --max-time 10 -w '\\n%{{http_code}}' http://{APP_HOSTS[name]}:8000/ready")
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body)


# --- deploy shape --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(APP_HOSTS))
def test_release_layout_and_units(name: str) -> None:
    host_ = host(name)
    current = host_.file("/opt/aiinfra-app/current")
    assert current.is_symlink
    assert re.fullmatch(r"/opt/aiinfra-app/releases/\d+\.\d+\.\d+\S*", current.linked_to)
    env = host_.file("/etc/aiinfra-app/app.env")
    assert (env.user, env.group, env.mode) == ("root", "aiinfra-app", 0o640)
    for unit in ("aiinfra-app-api", "aiinfra-app-worker"):
        service = host_.service(unit)
        assert service.is_running and service.is_enabled
        props = host_.check_output(f"systemctl show {unit} -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome")
        assert "User=aiinfra-app" in props and "NoNewPrivileges=yes" in props
        assert "ProtectSystem=strict" in props and "ProtectHome=yes" in props
    # The venv is built for this host's own Python (3.11 on Debian 12, 3.13 on 13).
    python = host_.check_output("/opt/aiinfra-app/current/venv/bin/python -c 'import sys; print(sys.version_info[:2])'")
    debian = host_.system_info.release.split(".")[0]
    assert python == {"12": "(3, 11)", "13": "(3, 13)"}[debian]
    # Migrations ran once for this release: nothing pending.
    assert (
        host_.run("/opt/aiinfra-app/current/venv/bin/aiinfra-migrate --env-file /etc/aiinfra-app/app.env --check").rc
        == 0
    )


@pytest.mark.parametrize("name", sorted(APP_HOSTS))
def test_api_binds_the_service_address_only(name: str) -> None:
    host_ = host(name)
    listening = host_.check_output("ss -Htln 'sport = :8000'")
    assert f"{APP_HOSTS[name]}:8000" in listening
    assert "0.0.0.0:8000" not in listening and "*:8000" not in listening


@pytest.mark.parametrize("name", sorted(APP_HOSTS))
def test_ready_names_each_dependency(name: str) -> None:
    code, report = ready(name)
    assert code == 200, report
    assert set(report["checks"]) == {"postgres", "redis", "rabbitmq", "search:postgres"}
    assert all(check["ok"] for check in report["checks"].values()), report


# --- through nginx -------------------------------------------------------------


def test_create_read_twice_and_search(api_key: str) -> None:
    token = f"mol{uuid.uuid4().hex[:12]}"
    before = cache_hits()
    doc = create_document(api_key, f"Lab {token}", f"searchable body {token}")
    # The worker indexes asynchronously: poll search with a bounded wait.
    deadline = time.monotonic() + 30
    while True:
        status, _, raw = https("GET", f"{BASE}/api/search?q={token}")
        assert status == 200, raw
        result = json.loads(raw)
        if [h for h in result["hits"] if h["id"] == doc["id"]]:
            break
        assert time.monotonic() < deadline, f"{doc['id']} not searchable after 30 s: {result}"
        time.sleep(0.5)
    assert result["backend"] == "postgres"
    # Read twice once indexed (the worker drops the cached copy when it marks
    # the document indexed): a miss, then a hit, through either app host.
    first = https("GET", f"{BASE}/api/documents/{doc['id']}")
    second = https("GET", f"{BASE}/api/documents/{doc['id']}")
    assert first[0] == second[0] == 200
    assert json.loads(second[2])["title"] == f"Lab {token}"
    assert (first[1].get("x-cache"), second[1].get("x-cache")) == ("miss", "hit")
    assert cache_hits() >= before + 1  # the hit is counted in the app's /metrics


def test_writes_need_the_api_key() -> None:
    body = {"title": "no key", "body": "", "tags": []}
    assert https("POST", f"{BASE}/api/documents", body)[0] == 401
    assert https("POST", f"{BASE}/api/documents", body, {"X-API-Key": "wrong-key-0123456789"})[0] == 403


def test_both_app_hosts_serve() -> None:
    seen = {json.loads(https("GET", f"{BASE}/api/version")[2])["hostname"] for _ in range(8)}
    assert seen == set(APP_HOSTS), seen


def test_tls_with_the_internal_ca_and_http_redirect(proxy: Host) -> None:
    assert curl(proxy, "-o", "/dev/null", "-w", "%{http_code}", f"https://{PROXY}/health").stdout == "200"
    assert curl(proxy, "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1/health").stdout == "200"
    # Without the CA the certificate is not trusted: the check above is real.
    assert proxy.run(f"curl -sS --max-time 10 -o /dev/null https://{PROXY}/health").rc == 60
    redirect = curl(proxy, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"http://{PROXY}/api/version?x=1")
    assert redirect.stdout == f"301 https://{PROXY}/api/version?x=1"
    assert https("GET", f"{BASE}/health")[0] == 200  # from the control node, CA-verified
    assert ca_file().is_file()


def test_spa_fallback_caching_and_gzip(proxy: Host) -> None:
    status, headers, body = https("GET", f"{BASE}/")
    assert status == 200 and b"aiinfra documents" in body
    assert headers["cache-control"] == "no-cache"
    deep = https("GET", f"{BASE}/documents/some/client/route")
    assert deep[0] == 200 and deep[2] == body  # SPA fallback to index.html
    asset = re.search(rb'src="(/assets/app\.[0-9a-f]{8}\.js)"', body)
    assert asset
    status, headers, _ = https("GET", f"{BASE}{asset.group(1).decode()}")
    assert status == 200
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    gz = curl(
        proxy, "-o", "/dev/null", "-D", "-", "-H", "Accept-Encoding: gzip", f"https://{PROXY}{asset.group(1).decode()}"
    )
    assert re.search(r"(?im)^content-encoding: gzip", gz.stdout), gz.stdout
    assert https("GET", f"{BASE}/assets/app.00000000.js")[0] == 404  # no fallback for assets


def test_json_access_log_with_request_id(proxy: Host) -> None:
    rid = f"lab-{uuid.uuid4().hex}"
    assert https("GET", f"{BASE}/api/version", headers={"X-Request-ID": rid})[0] == 200
    lines = proxy.check_output(f"grep -F {rid} /var/log/nginx/access.log").splitlines()
    entry = json.loads(lines[-1])
    assert entry["request_id"] == rid and entry["status"] == 200 and entry["uri"] == "/api/version"
    assert entry["upstream_addr"] in {f"{a}:8000" for a in APP_HOSTS.values()}


def test_nginx_exporter_and_stub_status_on_loopback(proxy: Host) -> None:
    metrics = proxy.check_output(f"curl -fsS --max-time 5 http://{PROXY}:9113/metrics")
    assert re.search(r"^nginx_up 1$", metrics, re.MULTILINE), metrics
    assert "Active connections" in proxy.check_output("curl -fsS --max-time 5 http://127.0.0.1:8080/stub_status")
    assert proxy.run(f"curl -sS --max-time 5 http://{PROXY}:8080/stub_status").rc != 0
    listening = proxy.check_output("ss -Htln")
    assert "0.0.0.0:80 " not in listening and "0.0.0.0:443 " not in listening


def test_nginx_config_is_valid(proxy: Host) -> None:
    assert proxy.run("nginx -t").rc == 0


# --- failure modes -------------------------------------------------------------


def test_redis_down_fails_ready_but_reads_still_work(api_key: str) -> None:
    data = host(group("redis")[0])
    doc = create_document(api_key, "read while redis is down", "from postgres")
    data.check_output("systemctl stop redis-server")
    try:
        for name in APP_HOSTS:
            code, report = ready(name)
            assert code == 503, report
            assert report["checks"]["redis"]["ok"] is False
            assert all(report["checks"][c]["ok"] for c in ("postgres", "rabbitmq", "search:postgres")), report
        for _ in range(2):
            status, headers, raw = https("GET", f"{BASE}/api/documents/{doc['id']}")
            assert status == 200 and json.loads(raw)["id"] == doc["id"]
            assert headers.get("x-cache") == "miss"
    finally:
        data.check_output("systemctl start redis-server")
    deadline = time.monotonic() + 30
    while any(ready(name)[0] != 200 for name in APP_HOSTS):
        assert time.monotonic() < deadline, "the app did not become ready after redis came back"
        time.sleep(0.5)


def test_stopped_app_host_is_skipped_by_nginx() -> None:
    """With two app hosts the other one answers every request; on the one-host shape
    (inventories/single) nothing is left, and nginx says so at once (502) instead of hanging."""
    first, *others = sorted(APP_HOSTS)
    app1 = host(first)
    app1.check_output("systemctl stop aiinfra-app-api")
    try:
        hosts = []
        for _ in range(6):
            status, _, raw = https("GET", f"{BASE}/api/version")
            if not others:
                assert status == 502, raw
                continue
            assert status == 200, raw
            hosts.append(json.loads(raw)["hostname"])
        if others:
            assert set(hosts) == {others[0]}
    finally:
        # The role's restart helper: restart, then wait for /ready.
        app1.check_output("/usr/local/sbin/aiinfra-app-restart")
    assert ready(first)[0] == 200
