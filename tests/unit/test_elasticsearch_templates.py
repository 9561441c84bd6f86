"""The elasticsearch role's templates rendered by Ansible for one-node and three-node clusters.

Elasticsearch is in none of the registries these machines reach, so the files the role
writes are proven here: one ansible-playbook run renders every template for every host
of a one-node and a three-node inventory (small, large and explicitly sized hosts), and
the tests compare them with values written out below.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.playbook import run_playbook

ROLE = Path(__file__).resolve().parents[2] / "roles" / "elasticsearch"
TEMPLATES = [
    "elasticsearch.yml.j2",
    "heap.options.j2",
    "sysctl.conf.j2",
    "limits.conf.j2",
    "elasticsearch.service.override.conf.j2",
    "exporter.default.j2",
    "aiinfra-elasticsearch-restart.j2",
    "elasticsearch.sources.j2",
]
SECRETS = {
    "elasticsearch_admin_password": "admin-password-0123456789",
    "elasticsearch_elastic_password": "elastic-password-0123456789",
    "elasticsearch_app_password": "app-password-0123456789",
    "elasticsearch_monitoring_password": "monitoring-password-0123456789",
}
# host: (group, host vars)
HOSTS: dict[str, tuple[str, dict[str, Any]]] = {
    # 700 MiB: half would be 350 MiB, the seed's 512 MiB floor wins.
    "one": ("es_one", {"platform_address": "192.0.2.10", "elasticsearch_memory_mb": 700}),
    # 2 GiB: half.
    "three-a": ("es_three", {"platform_address": "192.0.2.11", "elasticsearch_memory_mb": 2048}),
    # 128 GiB: half would be 64 GiB, capped at 31 GiB.
    "three-b": ("es_three", {"platform_address": "192.0.2.12", "elasticsearch_memory_mb": 131072}),
    # An explicit heap, an IPv6 service address, no memory lock.
    "three-c": (
        "es_three",
        {
            "platform_address": "2001:db8::13",
            "elasticsearch_memory_mb": 16384,
            "elasticsearch_heap_mb": 3000,
            "elasticsearch_memory_lock": False,
        },
    ),
}


def _inventory() -> dict[str, Any]:
    """The role's defaults as `all` vars, so that host vars override them as they do a role's defaults."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    groups: dict[str, Any] = {}
    for host, (group, hostvars) in HOSTS.items():
        entry = groups.setdefault(group, {"hosts": {}, "vars": {"elasticsearch_cluster_group": group}})
        entry["hosts"][host] = hostvars
    return {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                **defaults,
                **SECRETS,
            },
            "children": groups,
        }
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """host -> template name (without .j2) -> text, from one ansible-playbook run."""
    tmp = tmp_path_factory.mktemp("elasticsearch")
    play = {
        "name": "Render the elasticsearch role's templates",
        "hosts": "all",
        "gather_facts": False,
        "vars_files": [str(ROLE / "vars" / "main.yml")],
        "tasks": [
            {
                "name": f"Render {template}",
                "ansible.builtin.template": {
                    "src": str(ROLE / "templates" / template),
                    "dest": f"{tmp}/{{{{ inventory_hostname }}}}-{template.removesuffix('.j2')}",
                    "mode": "0600",
                },
            }
            for template in TEMPLATES
        ],
    }
    res = run_playbook(tmp, _inventory(), [play])
    assert res.returncode == 0, res.stdout + res.stderr
    return {
        host: {t.removesuffix(".j2"): (tmp / f"{host}-{t.removesuffix('.j2')}").read_text() for t in TEMPLATES}
        for host in HOSTS
    }


def _settings(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


SECURITY = {
    "xpack.security.enabled": True,
    "xpack.security.enrollment.enabled": False,
    "xpack.security.autoconfiguration.enabled": False,
    "xpack.security.http.ssl.enabled": True,
    "xpack.security.http.ssl.key": "certs/aiinfra/node.key",
    "xpack.security.http.ssl.certificate": "certs/aiinfra/node.crt",
    "xpack.security.http.ssl.certificate_authorities": ["certs/aiinfra/ca.crt"],
    "xpack.security.transport.ssl.enabled": True,
    "xpack.security.transport.ssl.verification_mode": "full",
    "xpack.security.transport.ssl.client_authentication": "required",
    "xpack.security.transport.ssl.key": "certs/aiinfra/node.key",
    "xpack.security.transport.ssl.certificate": "certs/aiinfra/node.crt",
    "xpack.security.transport.ssl.certificate_authorities": ["certs/aiinfra/ca.crt"],
    "action.destructive_requires_name": True,
}


def test_single_node_configuration(rendered: dict[str, dict[str, str]]) -> None:
    assert _settings(rendered["one"]["elasticsearch.yml"]) == {
        "cluster.name": "aiinfra",
        "node.name": "one",
        "path.data": "/var/lib/elasticsearch",
        "path.logs": "/var/log/elasticsearch",
        "path.repo": ["/var/backups/elasticsearch"],
        "bootstrap.memory_lock": True,
        "network.bind_host": ["127.0.0.1", "192.0.2.10"],
        "network.publish_host": "192.0.2.10",
        "http.port": 9200,
        "transport.port": 9300,
        "discovery.type": "single-node",
        **SECURITY,
    }


def test_three_node_configuration(rendered: dict[str, dict[str, str]]) -> None:
    seeds = ["192.0.2.11:9300", "192.0.2.12:9300", "[2001:db8::13]:9300"]
    masters = ["three-a", "three-b", "three-c"]
    expected_a = {
        "cluster.name": "aiinfra",
        "node.name": "three-a",
        "path.data": "/var/lib/elasticsearch",
        "path.logs": "/var/log/elasticsearch",
        "path.repo": ["/var/backups/elasticsearch"],
        "bootstrap.memory_lock": True,
        "network.bind_host": ["127.0.0.1", "192.0.2.11"],
        "network.publish_host": "192.0.2.11",
        "http.port": 9200,
        "transport.port": 9300,
        "discovery.seed_hosts": seeds,
        "cluster.initial_master_nodes": masters,
        **SECURITY,
    }
    assert _settings(rendered["three-a"]["elasticsearch.yml"]) == expected_a
    c = _settings(rendered["three-c"]["elasticsearch.yml"])
    assert c["node.name"] == "three-c"
    assert c["network.bind_host"] == ["127.0.0.1", "2001:db8::13"]
    assert c["network.publish_host"] == "2001:db8::13"
    assert c["bootstrap.memory_lock"] is False
    assert c["discovery.seed_hosts"] == seeds and c["cluster.initial_master_nodes"] == masters
    assert "discovery.type" not in c


def test_heap_follows_the_host(rendered: dict[str, dict[str, str]]) -> None:
    def heap(host: str) -> list[str]:
        return [line for line in rendered[host]["heap.options"].splitlines() if line.startswith("-X")]

    assert heap("one") == ["-Xms512m", "-Xmx512m"]  # floor: 700 MiB host
    assert heap("three-a") == ["-Xms1024m", "-Xmx1024m"]  # half of 2 GiB
    assert heap("three-b") == ["-Xms31744m", "-Xmx31744m"]  # ceiling: 128 GiB host
    assert heap("three-c") == ["-Xms3000m", "-Xmx3000m"]  # explicit


def test_kernel_settings(rendered: dict[str, dict[str, str]]) -> None:
    for host in HOSTS:
        lines = [line for line in rendered[host]["sysctl.conf"].splitlines() if line and not line.startswith("#")]
        assert lines == ["vm.max_map_count = 262144", "vm.swappiness = 1"]


def test_limits(rendered: dict[str, dict[str, str]]) -> None:
    def rules(host: str) -> list[str]:
        return [line for line in rendered[host]["limits.conf"].splitlines() if line and not line.startswith("#")]

    assert rules("one") == [
        "elasticsearch - nofile 65535",
        "elasticsearch - nproc 4096",
        "elasticsearch - memlock unlimited",
    ]
    assert rules("three-c") == ["elasticsearch - nofile 65535", "elasticsearch - nproc 4096"]


def test_systemd_override(rendered: dict[str, dict[str, str]]) -> None:
    def directives(host: str) -> list[str]:
        text = rendered[host]["elasticsearch.service.override.conf"]
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    assert directives("one") == [
        "[Service]",
        "LimitNOFILE=65535",
        "LimitNPROC=4096",
        "LimitMEMLOCK=infinity",
        "TimeoutStartSec=900",
    ]
    assert "LimitMEMLOCK=infinity" not in directives("three-c")


def test_exporter_reads_https_with_the_monitoring_user(rendered: dict[str, dict[str, str]]) -> None:
    lines = [line for line in rendered["three-a"]["exporter.default"].splitlines() if not line.startswith("#")]
    assert lines == [
        'ES_USERNAME="monitoring"',
        'ES_PASSWORD="monitoring-password-0123456789"',
        'ARGS="--web.listen-address=192.0.2.11:9114 --es.uri=https://127.0.0.1:9200'
        ' --es.ca=/usr/local/share/aiinfra/elasticsearch-ca.crt --es.timeout=10s --es.indices --es.snapshots"',
    ]
    assert "--web.listen-address=[2001:db8::13]:9114" in rendered["three-c"]["exporter.default"]


def test_restart_helper_is_valid_shell_and_rolls(rendered: dict[str, dict[str, str]], tmp_path: Path) -> None:
    text = rendered["three-b"]["aiinfra-elasticsearch-restart"]
    script = tmp_path / "helper"
    script.write_text(text)
    res = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "node=three-b" in text
    # allocation off before the restart, on again and green after it
    order = [
        text.index("allocation '\"primaries\"'"),
        text.index("api POST /_flush"),
        text.index("systemctl restart elasticsearch.service"),
        text.index("allocation null"),
        text.index("wait_for_status=green"),
    ]
    assert text.index("restart)") < order[2]
    assert order[3] < order[4]


def _apt_print_uris(parts: Path, lists: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "apt-get",
            "-o",
            "Dir::Etc::SourceList=/dev/null",
            "-o",
            f"Dir::Etc::SourceParts={parts}",
            "-o",
            f"Dir::State::Lists={lists}",
            "-o",
            "Debug::NoLocking=1",
            "--print-uris",
            "update",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (the Debian control node has it)")
def test_apt_accepts_the_elastic_source(rendered: dict[str, dict[str, str]], tmp_path: Path) -> None:
    """apt parses the deb822 file and would fetch Elastic's 8.x suite (--print-uris: no network)."""
    parts, lists = tmp_path / "sources.list.d", tmp_path / "lists"
    (lists / "partial").mkdir(parents=True)
    parts.mkdir()
    (parts / "elasticsearch.sources").write_text(rendered["one"]["elasticsearch.sources"])
    res = _apt_print_uris(parts, lists)
    assert res.returncode == 0, res.stderr
    assert "E:" not in res.stderr and "W:" not in res.stderr, res.stderr
    assert "https://artifacts.elastic.co/packages/8.x/apt/dists/stable/InRelease" in res.stdout
    assert "Signed-By: /etc/apt/keyrings/elasticsearch.asc" in rendered["one"]["elasticsearch.sources"]


@pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")
def test_shipped_key_is_elastics(tmp_path: Path) -> None:
    """The keyring shipped with the role is Elastic's signing key, by fingerprint."""
    res = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(tmp_path),
            "--show-keys",
            "--with-colons",
            str(ROLE / "files" / "elasticsearch-keyring.asc"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    fingerprints = [line.split(":")[9] for line in res.stdout.splitlines() if line.startswith("fpr:")]
    assert fingerprints[0] == "46095ACC8548582C1A2699A9D27D666CD88E42B4"
