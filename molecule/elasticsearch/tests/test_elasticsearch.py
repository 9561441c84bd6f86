"""The elasticsearch role, verified by using Elasticsearch: green, TLS only, users confined.

Without ELASTICSEARCH_DEB only test_check_mode_left_the_host_untouched runs (the scenario
ran the role in --check mode on a fresh container); every other test reports NOT RUN.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from infra import Host, default_address, http_get
from infra.elasticsearch import CA, api, password

REAL = bool(os.environ.get("ELASTICSEARCH_DEB"))
APP_INDEX = "documents"
HEAP_MB = 512  # elasticsearch_memory_mb 1024 in the scenario: half


@pytest.mark.check_mode
@pytest.mark.skipif(REAL, reason="the container was converged for real")
def test_check_mode_left_the_host_untouched(host: Host) -> None:
    """The --check run went through preflight, repository and configuration and wrote nothing."""
    for path in (
        "/etc/elasticsearch",
        "/etc/apt/sources.list.d/elasticsearch.sources",
        "/etc/apt/keyrings/elasticsearch.asc",
        "/etc/sysctl.d/62-aiinfra-elasticsearch.conf",
        "/etc/security/limits.d/62-aiinfra-elasticsearch.conf",
        "/etc/systemd/system/elasticsearch.service.d",
        "/usr/local/sbin/aiinfra-elasticsearch-restart",
    ):
        assert not host.file(path).exists, path
    assert not host.user("elasticsearch").exists
    assert not host.package("elasticsearch").is_installed


def test_service_runs_with_its_limits(host: Host) -> None:
    service = host.service("elasticsearch")
    assert service.is_running and service.is_enabled
    props = host.check_output("systemctl show elasticsearch -p LimitNOFILE -p LimitMEMLOCK -p LimitNPROC")
    assert "LimitNOFILE=65535" in props
    assert "LimitMEMLOCK=infinity" in props
    assert "LimitNPROC=4096" in props
    assert host.check_output("dpkg-query -W -f '${Version}' elasticsearch") == "8.11.3"
    assert "hold" in host.check_output("dpkg --get-selections elasticsearch")


def test_cluster_is_green_with_heap_and_memory_lock(host: Host) -> None:
    health = api(host, "GET", "/_cluster/health?wait_for_status=green&timeout=60s")
    assert health.status == 200 and health.body["status"] == "green", health
    wanted = "filter_path=nodes.*.jvm.mem.heap_max_in_bytes,nodes.*.process.mlockall"
    nodes = api(host, "GET", f"/_nodes/_local/jvm,process?{wanted}")
    (node,) = nodes.body["nodes"].values()
    assert node["jvm"]["mem"]["heap_max_in_bytes"] == HEAP_MB * 1024 * 1024
    assert node["process"]["mlockall"] is True


def test_http_requires_tls_and_the_certificate_verifies(host: Host) -> None:
    address = default_address(host)
    plain = http_get(host, f"http://{address}:9200/", "-o", "/dev/null", "-w", "%{http_code}")
    assert plain.stdout.strip() in ("000", ""), plain.stdout  # no HTTP answer over plain text
    # verified against the internal CA, by the service address the certificate names
    ok = api(host, "GET", "/_security/_authenticate", "elastic", base=f"https://{address}:9200")
    assert ok.status == 200 and ok.body["username"] == "elastic", ok


def test_transport_requires_tls(host: Host) -> None:
    address = default_address(host)
    res = host.run(f"openssl s_client -connect {address}:9300 -CAfile {CA} </dev/null")
    # the node presents its certificate and asks for the client's
    assert "Verify return code: 0 (ok)" in res.stdout, res.stdout
    assert "Acceptable client certificate CA names" in res.stdout, res.stdout


def test_wrong_or_missing_credentials_are_refused(host: Host) -> None:
    assert api(host, "GET", "/_cluster/health", None).status == 401
    assert api(host, "GET", "/_cluster/health", "elastic", pw=password("elastic")[::-1] + "x").status == 401
    assert api(host, "GET", "/_cluster/health", "app", pw=password("app") + "x").status == 401


def test_app_user_indexes_and_searches_its_index(host: Host) -> None:
    doc_id, word = str(uuid.uuid4()), uuid.uuid4().hex
    # what the app's setup() does: does the index exist, create it with its mapping
    exists = api(host, "HEAD", f"/{APP_INDEX}", "app")
    if exists.status == 404:
        created = api(host, "PUT", f"/{APP_INDEX}", "app", {"mappings": {"properties": {"title": {"type": "text"}}}})
        assert created.status == 200, created
    put = api(
        host,
        "PUT",
        f"/{APP_INDEX}/_doc/{doc_id}?refresh=true&version=1&version_type=external_gte",
        "app",
        {"title": word, "body": "b", "tags": ["t"], "source": "s", "version": 1, "created_at": "2024-01-01T00:00:00Z"},
    )
    assert put.status in (200, 201), put
    found = api(host, "POST", f"/{APP_INDEX}/_search", "app", {"query": {"match": {"title": word}}})
    assert found.status == 200 and [h["_id"] for h in found.body["hits"]["hits"]] == [doc_id], found
    assert api(host, "DELETE", f"/{APP_INDEX}/_doc/{doc_id}?refresh=true", "app").status == 200
    # the app's ping
    assert api(host, "GET", "/_cluster/health", "app").status == 200


def test_app_index_follows_the_template_and_lifecycle(host: Host) -> None:
    api(host, "PUT", f"/{APP_INDEX}", "app")  # exists already, or is created now
    settings = api(host, "GET", f"/{APP_INDEX}/_settings", "aiinfra_admin").body[APP_INDEX]["settings"]["index"]
    assert settings["lifecycle"]["name"] == "aiinfra-app"
    assert settings["number_of_replicas"] == "0"  # one node: no replica, green
    explain = api(host, "GET", f"/{APP_INDEX}/_ilm/explain").body["indices"][APP_INDEX]
    assert explain["managed"] is True and explain["policy"] == "aiinfra-app"


def test_app_user_is_refused_everywhere_else(host: Host) -> None:
    other = f"other-{uuid.uuid4().hex[:8]}"
    assert api(host, "PUT", f"/{other}", "app").status == 403
    assert api(host, "PUT", f"/{other}/_doc/1", "app", {"a": 1}).status == 403
    assert api(host, "POST", "/.security/_search", "app", {}).status == 403
    assert api(host, "DELETE", f"/{APP_INDEX}", "app").status == 403  # no index deletion
    assert api(host, "GET", "/_security/user", "app").status == 403
    assert api(host, "PUT", "/_cluster/settings", "app", {"persistent": {}}).status == 403


def test_monitoring_user_reads_stats_but_no_document(host: Host) -> None:
    assert api(host, "GET", "/_cluster/health", "monitoring").status == 200
    assert api(host, "GET", "/_nodes/stats", "monitoring").status == 200
    assert api(host, "POST", f"/{APP_INDEX}/_search", "monitoring", {}).status == 403
    assert api(host, "PUT", f"/{APP_INDEX}/_doc/x", "monitoring", {"a": 1}).status == 403


def test_snapshot_repository_and_daily_policy_take_a_snapshot(host: Host) -> None:
    assert api(host, "POST", "/_snapshot/aiinfra-backups/_verify").status == 200
    started = api(host, "POST", "/_slm/policy/aiinfra-daily/_execute")
    assert started.status == 200, started
    name = started.body["snapshot_name"]
    deadline = time.monotonic() + 120
    while True:
        snap = api(host, "GET", f"/_snapshot/aiinfra-backups/{name}")
        if snap.status == 200 and snap.body["snapshots"][0]["state"] in ("SUCCESS", "FAILED", "PARTIAL"):
            break
        assert time.monotonic() < deadline, snap
        time.sleep(2)
    assert snap.body["snapshots"][0]["state"] == "SUCCESS", snap


def test_exporter_reports_a_green_cluster(host: Host) -> None:
    address = default_address(host)
    metrics = http_get(host, f"http://{address}:9114/metrics")
    assert metrics.rc == 0, metrics.stderr
    assert 'elasticsearch_cluster_health_status{cluster="aiinfra",color="green"} 1' in metrics.stdout
    # bound to the service address, not to every interface
    assert http_get(host, "http://127.0.0.1:9114/metrics").rc != 0


def test_configuration_is_private(host: Host) -> None:
    for path, mode in (
        ("/etc/elasticsearch/elasticsearch.yml", 0o660),
        ("/etc/elasticsearch/certs/aiinfra/node.key", 0o640),
        ("/etc/elasticsearch/aiinfra-admin.netrc", 0o600),
        ("/etc/default/prometheus-elasticsearch-exporter", 0o640),
    ):
        f = host.file(path)
        assert f.exists and f.mode == mode, (path, oct(f.mode))
    assert host.file("/etc/elasticsearch/jvm.options.d/aiinfra-heap.options").contains(f"^-Xmx{HEAP_MB}m$")


def test_rolling_restart_helper_brings_the_node_back_green(host: Host) -> None:
    before = host.check_output("systemctl show elasticsearch -p MainPID --value")
    res = host.run("/usr/local/sbin/aiinfra-elasticsearch-restart restart 300")
    assert res.rc == 0, res.stdout + res.stderr
    assert host.check_output("systemctl show elasticsearch -p MainPID --value") != before
    settings = api(host, "GET", "/_cluster/settings").body
    assert "routing" not in str(settings.get("persistent", {})), settings  # allocation re-enabled
    assert api(host, "GET", "/_cluster/health").body["status"] == "green"
