"""Grafana, Loki, Tempo and Alloy: what their roles would write, rendered and checked
statically, and their bad inputs refused in preflight.

Grafana's apt repository (the only source of these packages the roles use) is not
reachable from this project's machines, so the roles cannot converge here. Instead
one ansible-playbook run renders, with the roles' own variables:
- grafana.ini with the grafana.grafana collection's own template and our overrides,
- the data source and dashboard provisioning files with the collection's own task
  text (read from the installed collection, not copied),
- Loki's and Tempo's configuration and Alloy's configuration and flags,
and the tests check them (YAML/INI parse, keys known to the pinned versions,
addresses, URLs, no secret in any file). A second check-mode run feeds each role's
preflight one bad input per host.
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.playbook import BatchRun, assert_stopped, run_batch, run_playbook

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
# The grafana.grafana collection of the control node's ansible bundle.
_SPEC = importlib.util.find_spec("ansible_collections.grafana.grafana")
assert _SPEC is not None and _SPEC.submodule_search_locations, "the grafana.grafana collection is not installed"
COLLECTION = Path(next(iter(_SPEC.submodule_search_locations))) / "roles" / "grafana"
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
ADMIN = "admin-secret-0123456789"
PG = "pg-secret-0123456789"
ES = "es-secret-0123456789"
SECRETS = {"grafana_admin_password": ADMIN, "grafana_postgres_password": PG, "grafana_elasticsearch_password": ES}
GRAFANA_VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    # No proxy, PostgreSQL, Elasticsearch, Loki or Tempo hosts.
    "minimal": {
        "grafana_proxy_group": "nothing",
        "grafana_postgres_group": "nothing",
        "grafana_elasticsearch_group": "nothing",
        "grafana_monitoring_group": "nothing",
    },
}
# Top-level keys of the pinned versions' configuration files (Loki 3.5, Tempo 2.8).
LOKI_KEYS = {
    "target", "auth_enabled", "server", "distributor", "querier", "query_scheduler", "frontend", "query_range",
    "ruler", "ingester_client", "ingester", "pattern_ingester", "index_gateway", "bloom_build", "bloom_gateway",
    "storage_config", "chunk_store_config", "schema_config", "compactor", "limits_config", "frontend_worker",
    "table_manager", "memberlist", "runtime_config", "operational_config", "tracing", "analytics", "common",
    "shutdown_delay", "metadata_record_config", "kafka_config", "ballast_bytes",
}  # fmt: skip
TEMPO_KEYS = {
    "target", "http_api_prefix", "server", "distributor", "ingester", "metrics_generator", "querier",
    "query_frontend", "compactor", "storage", "overrides", "memberlist", "usage_report", "cache",
    "stream_over_http_enabled", "multitenancy_enabled", "internal_server", "ingester_client",
    "metrics_generator_client", "block_builder", "backend_scheduler", "backend_worker", "ingest",
}  # fmt: skip


def _inventory(**extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "all": {
            "vars": {**LOCAL, "internal_ca_dir": "/nonexistent-ca"},
            "children": {
                "monitoring": {"hosts": {"mon-a": {"platform_address": "192.0.2.2", **SECRETS}, **extra}},
                "proxy": {"hosts": {"px": {"platform_address": "192.0.2.10"}}},
                "postgres": {"hosts": {"pg": {"platform_address": "192.0.2.21"}}},
                "elasticsearch": {"hosts": {"es": {"platform_address": "192.0.2.31"}}},
            },
        }
    }


def _collection_content(task_file: str, task_name: str) -> str:
    """The `content` the collection's role writes for one of its provisioning files."""
    tasks = yaml.safe_load((COLLECTION / "tasks" / task_file).read_text())
    for task in tasks:
        for inner in [task, *task.get("block", [])]:
            if inner.get("name") == task_name:
                content: str = inner["ansible.builtin.copy"]["content"]
                return content
    raise AssertionError(f"{task_name} not found in the collection's {task_file}")


def _vars_files(*roles: str) -> list[str]:
    return [str(ROLES / role / part / "main.yml") for role in roles for part in ("defaults", "vars")]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("grafana")
    grafana_tasks: list[dict[str, Any]] = []
    for variant, overrides in GRAFANA_VARIANTS.items():
        ini = "{{ grafana_ini_default | combine(_grafana_ini, recursive=true) }}"
        grafana_tasks += [
            {
                "name": f"grafana.ini ({variant})",
                "ansible.builtin.template": {
                    "src": str(COLLECTION / "templates" / "grafana.ini.j2"),
                    "dest": f"{tmp}/{variant}-grafana.ini",
                },
                "vars": {**overrides, "grafana_ini": ini},
            },
            {
                "name": f"Data sources ({variant})",
                "ansible.builtin.copy": {
                    "content": _collection_content("datasources.yml", "Create/Update datasources file (provisioning)"),
                    "dest": f"{tmp}/{variant}-datasources.yml",
                },
                "vars": {**overrides, "grafana_datasources": "{{ _grafana_datasources }}"},
            },
        ]
    grafana_tasks.append(
        {
            "name": "Dashboard provider",
            "ansible.builtin.copy": {
                "content": _collection_content("dashboards.yml", "Create/Update dashboards file (provisioning)"),
                "dest": f"{tmp}/dashboards.yml",
            },
            "vars": {"grafana_ini": "{{ grafana_ini_default | combine(_grafana_ini, recursive=true) }}"},
        }
    )
    service_tasks = [
        {
            "name": "Loki",
            "ansible.builtin.template": {"src": str(ROLES / "loki/templates/config.yml.j2"), "dest": f"{tmp}/loki.yml"},
        },
        {
            "name": "Tempo",
            "ansible.builtin.template": {
                "src": str(ROLES / "tempo/templates/config.yml.j2"),
                "dest": f"{tmp}/tempo.yml",
            },
        },
    ]
    plays = [
        {
            "name": "Grafana, Loki and Tempo files",
            "hosts": "mon-a",
            "gather_facts": False,
            "vars_files": [
                str(COLLECTION / "defaults" / "main.yml"),
                *_vars_files("grafana", "loki", "tempo"),
            ],
            "tasks": grafana_tasks + service_tasks,
        },
        {
            "name": "Alloy files on every host",
            "hosts": "mon-a:px",
            "gather_facts": False,
            "vars_files": _vars_files("alloy"),
            "tasks": [
                {
                    "name": f"Alloy {template}",
                    "ansible.builtin.template": {
                        "src": str(ROLES / "alloy" / "templates" / f"{template}.j2"),
                        "dest": f"{tmp}/{{{{ inventory_hostname }}}}-{template}",
                    },
                }
                for template in ("config.alloy", "alloy.default")
            ],
        },
    ]
    res = run_playbook(tmp, _inventory(), plays)
    assert res.returncode == 0, res.stdout + res.stderr
    return tmp


def _ini(path: Path) -> configparser.ConfigParser:
    """grafana.ini; the keys before the first section go to [root]."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string("[root]\n" + path.read_text())
    return parser


def _datasources(tmp: Path, variant: str) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((tmp / f"{variant}-datasources.yml").read_text())
    assert document["apiVersion"] == 1
    return {source["name"]: source for source in document["datasources"]}


def _no_secret_in(tmp: Path) -> None:
    for path in tmp.iterdir():
        if path.is_file() and path.name not in ("hosts.yml", "play.yml"):
            text = path.read_text()
            for secret in (ADMIN, PG, ES):
                assert secret not in text, path.name


def test_grafana_ini_serves_under_the_sub_path_on_the_service_address(rendered: Path) -> None:
    ini = _ini(rendered / "full-grafana.ini")
    assert ini["server"]["http_addr"] == "192.0.2.2"
    assert ini["server"]["http_port"] == "3000"
    assert ini["server"]["root_url"] == "https://px/monitoring/grafana/"
    assert ini["server"]["domain"] == "px"
    assert ini["server"]["serve_from_sub_path"] == "True"
    assert ini["security"]["cookie_secure"] == "True"
    assert ini["users"]["allow_sign_up"] == "False"
    assert ini["auth.anonymous"]["enabled"] == "False"
    assert ini["analytics"]["reporting_enabled"] == "False"
    minimal = _ini(rendered / "minimal-grafana.ini")
    assert minimal["server"]["root_url"] == "http://192.0.2.2:3000/monitoring/grafana/"
    assert minimal["security"]["cookie_secure"] == "False"


def test_secrets_are_file_references_never_values(rendered: Path) -> None:
    ini = _ini(rendered / "full-grafana.ini")
    assert ini["security"]["admin_user"] == "admin"
    assert ini["security"]["admin_password"] == "$__file{/etc/grafana/aiinfra-secrets/admin_password}"
    sources = _datasources(rendered, "full")
    assert sources["PostgreSQL"]["secureJsonData"] == {
        "password": "$__file{/etc/grafana/aiinfra-secrets/postgres_password}"
    }
    assert sources["Elasticsearch"]["secureJsonData"]["basicAuthPassword"] == (
        "$__file{/etc/grafana/aiinfra-secrets/elasticsearch_password}"
    )
    _no_secret_in(rendered)


def test_data_sources_follow_the_inventory(rendered: Path) -> None:
    sources = _datasources(rendered, "full")
    assert set(sources) == {"Prometheus", "Loki", "Tempo", "PostgreSQL", "Elasticsearch"}
    assert [name for name, s in sources.items() if s.get("isDefault")] == ["Prometheus"]
    assert sources["Prometheus"]["url"] == "http://192.0.2.2:9090/monitoring/prometheus/"
    assert sources["Loki"]["url"] == "http://192.0.2.2:3100"
    assert sources["Tempo"]["url"] == "http://192.0.2.2:3200"
    assert sources["PostgreSQL"]["url"] == "192.0.2.21:5432"
    assert sources["PostgreSQL"]["type"] == "grafana-postgresql-datasource"
    assert sources["PostgreSQL"]["jsonData"]["sslmode"] == "require"
    assert sources["PostgreSQL"]["jsonData"]["database"] == "postgres"
    assert sources["Elasticsearch"]["url"] == "https://192.0.2.31:9200"
    assert sources["Elasticsearch"]["basicAuthUser"] == "grafana"
    assert sources["Elasticsearch"]["jsonData"]["tlsAuthWithCACert"] is True
    assert sources["Elasticsearch"]["secureJsonData"]["tlsCACert"] == "$__file{/etc/grafana/aiinfra-ca.crt}"
    # Each has a fixed uid: Tempo links to Loki and Prometheus by uid.
    assert {s["uid"] for s in sources.values()} == {"prometheus", "loki", "tempo", "postgres", "elasticsearch"}
    assert sources["Tempo"]["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert sources["Tempo"]["jsonData"]["serviceMap"]["datasourceUid"] == "prometheus"
    # `$$` is Grafana's escape for a literal `$` in provisioning files.
    assert sources["Loki"]["jsonData"]["derivedFields"][0]["url"] == "$${__value.raw}"
    assert all("_enabled" not in s for s in sources.values())


def test_groups_without_hosts_give_no_data_source(rendered: Path) -> None:
    assert set(_datasources(rendered, "minimal")) == {"Prometheus"}


def test_dashboard_provider_points_at_the_copied_dashboards(rendered: Path) -> None:
    provider = yaml.safe_load((rendered / "dashboards.yml").read_text())
    assert provider["apiVersion"] == 1
    (only,) = provider["providers"]
    assert only["type"] == "file"
    assert only["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboards = sorted(p.stem for p in (ROLES / "grafana" / "files" / "dashboards").glob("*.json"))
    assert dashboards == [
        "cache-hit-rates",
        "database-performance",
        "queue-metrics",
        "service-health",
        "system-overview",
    ]


def test_loki_config(rendered: Path) -> None:
    config = yaml.safe_load((rendered / "loki.yml").read_text())
    assert set(config) <= LOKI_KEYS, set(config) - LOKI_KEYS
    assert config["auth_enabled"] is False
    assert config["server"]["http_listen_address"] == "192.0.2.2"
    assert config["server"]["http_listen_port"] == 3100
    assert config["server"]["grpc_listen_address"] == "127.0.0.1"
    (schema,) = config["schema_config"]["configs"]
    assert (schema["store"], schema["object_store"], schema["schema"]) == ("tsdb", "filesystem", "v13")
    assert schema["index"]["period"] == "24h"
    assert config["common"]["storage"]["filesystem"]["chunks_directory"] == "/var/lib/loki/chunks"
    assert config["limits_config"]["retention_period"] == "168h"
    # Loki 3 refuses retention without a delete request store.
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    assert config["ruler"]["alertmanager_url"] == "http://192.0.2.2:9093/monitoring/alertmanager/"
    assert config["analytics"]["reporting_enabled"] is False


def test_tempo_config(rendered: Path) -> None:
    config = yaml.safe_load((rendered / "tempo.yml").read_text())
    assert set(config) <= TEMPO_KEYS, set(config) - TEMPO_KEYS
    assert config["server"]["http_listen_address"] == "192.0.2.2"
    assert config["server"]["http_listen_port"] == 3200
    assert config["server"]["grpc_listen_address"] == "127.0.0.1"
    protocols = config["distributor"]["receivers"]["otlp"]["protocols"]
    assert protocols == {"grpc": {"endpoint": "192.0.2.2:4317"}, "http": {"endpoint": "192.0.2.2:4318"}}
    assert config["compactor"]["compaction"]["block_retention"] == "336h"
    assert config["storage"]["trace"]["backend"] == "local"
    assert config["storage"]["trace"]["local"]["path"] == "/var/lib/tempo/blocks"
    assert config["usage_report"]["reporting_enabled"] is False
    loki = yaml.safe_load((rendered / "loki.yml").read_text())
    assert loki["server"]["grpc_listen_port"] != config["server"]["grpc_listen_port"]


def _balanced(text: str) -> bool:
    depth = 0
    for char in re.sub(r"(?m)//.*$", "", re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)):
        depth += {"{": 1, "}": -1, "[": 1, "]": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_alloy_ships_the_journal_and_group_files_to_loki(rendered: Path) -> None:
    mon = (rendered / "mon-a-config.alloy").read_text()
    proxy = (rendered / "px-config.alloy").read_text()
    for text, host in ((mon, "mon-a"), (proxy, "px")):
        assert _balanced(text), text
        assert 'url = "http://192.0.2.2:3100/loki/api/v1/push"' in text
        assert f'host = "{host}",' in text
        assert 'loki.source.journal "journal"' in text
        assert "forward_to    = [loki.write.default.receiver]" in text
    assert "/var/log/nginx/*.log" in proxy and 'loki.source.file "files"' in proxy
    assert "local.file_match" not in mon
    flags = (rendered / "px-alloy.default").read_text()
    assert "--server.http.listen-addr=127.0.0.1:12345" in flags
    assert 'CONFIG_FILE="/etc/alloy/config.alloy"' in flags


PREFLIGHT = [
    {
        "name": "Grafana stack inputs",
        "hosts": "monitoring",
        "gather_facts": True,
        "tasks": [
            {
                "name": f"{role} inputs",
                "ansible.builtin.include_role": {"name": f"aiinfra.platform.{role}", "tasks_from": "preflight"},
            }
            for role in ("grafana_repo", "grafana", "loki", "tempo", "alloy")
        ],
    }
]
BAD: dict[str, tuple[dict[str, Any], list[str]]] = {
    "admin-missing": (
        {"grafana_admin_password": ""},
        ["grafana_admin_password is missing or shorter than 16 characters"],
    ),
    "pg-short": (
        {"grafana_postgres_password": "short"},
        ["grafana_postgres_password is missing or shorter than 16 characters", "postgres group has hosts"],
    ),
    "sub-path": ({"grafana_sub_path": "/grafana"}, ["grafana_sub_path (/grafana)"]),
    "root-url": ({"grafana_root_url": "https://px/grafana/"}, ["grafana_root_url (https://px/grafana/)"]),
    "grafana-latest": ({"grafana_version": "latest"}, ["grafana_version (latest) must be an exact version"]),
    "loki-version": ({"loki_version": "2.9.4"}, ["loki_version (2.9.4) must be an exact Loki 3.x version"]),
    "loki-retention": ({"loki_retention_period": "12h"}, ["loki_retention_period (12h)", "at least 24h"]),
    "loki-wildcard": ({"loki_listen_address": "0.0.0.0"}, ["loki_listen_address (0.0.0.0)", "not a wildcard"]),
    "tempo-ports": ({"tempo_otlp_http_port": 4317}, ["tempo_otlp_http_port must differ"]),
    "alloy-no-loki": (
        {"alloy_loki_group": "nothing"},
        ["alloy_loki_push_url (empty)", "put a host in the nothing group"],
    ),
    "alloy-path": (
        {"alloy_file_logs_extra": [{"job": "app", "path": "var/log/x.log"}]},
        ["alloy_file_logs_extra needs job"],
    ),
    "repo-uri": ({"grafana_repo_uri": "apt.grafana.com"}, ["grafana_repo_uri (apt.grafana.com)"]),
}


@pytest.fixture(scope="module")
def preflight(tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    """One check-mode run, one monitoring host per case (each fails on its own)."""
    tmp = tmp_path_factory.mktemp("preflight")
    hosts = {name: {"platform_address": "192.0.2.3", **SECRETS, **hostvars} for name, (hostvars, _) in BAD.items()}
    inventory = _inventory(**hosts)
    inventory["all"]["vars"].pop("internal_ca_dir")
    return run_batch(tmp, inventory, PREFLIGHT, "--check", "--limit", "monitoring")


def test_good_inputs_pass_preflight(preflight: BatchRun) -> None:
    good = preflight["mon-a"]
    assert not good.failed and good.changed == 0, good


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_stop_in_preflight(preflight: BatchRun, case: str) -> None:
    assert_stopped(preflight, case, *BAD[case][1])
