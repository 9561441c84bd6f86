"""Blackbox probes: the prometheus role's `blackbox` job generated from the inventory,
the blackbox_exporter role's modules, and bad probe inputs refused in preflight.

One ansible-playbook run renders every variant (templates to a temporary
directory, local connection); the rendered scrape configuration must also pass
`promtool check config` (Debian's prometheus package on the control node).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.playbook import BatchRun, assert_stopped, run_batch, run_playbook

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "roles" / "prometheus"
BLACKBOX = REPO / "roles" / "blackbox_exporter"
PROMTOOL = shutil.which("promtool")
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
EXTRA = [
    {"target": "https://status.example.com/", "module": "http_2xx"},
    {"target": "192.0.2.40:5432", "module": "tcp_connect"},
]


def _inventory(**monitoring_vars: Any) -> dict[str, Any]:
    return {
        "all": {
            "vars": LOCAL,
            "children": {
                "monitoring": {"hosts": {"mon-a": {"platform_address": "192.0.2.2", **monitoring_vars}}},
                "proxy": {
                    "hosts": {
                        "px-b": {"platform_address": "192.0.2.11"},
                        "px-a": {"platform_address": "2001:db8::10"},
                    }
                },
                "app": {"hosts": {"app-a": {"platform_address": "192.0.2.21"}}},
            },
        }
    }


VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "extra": {"prometheus_blackbox_extra_targets": EXTRA},
    "only-extra": {"prometheus_blackbox_targets": [], "prometheus_blackbox_extra_targets": EXTRA[1:]},
    "none": {"prometheus_blackbox_targets": []},
    "disabled": {"prometheus_blackbox_enabled": False},
}
CA_VARIANTS: dict[str, dict[str, Any]] = {
    "ca": {"blackbox_exporter_ca_src": "/ca.crt"},
    "system": {"blackbox_exporter_ca_src": ""},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("blackbox")
    tasks: list[dict[str, Any]] = [
        {
            "name": f"Scrape configuration ({variant})",
            "ansible.builtin.template": {
                "src": str(PROMETHEUS / "templates" / "prometheus.yml.j2"),
                "dest": f"{tmp}/prometheus-{variant}.yml",
            },
            "vars": overrides,
        }
        for variant, overrides in VARIANTS.items()
    ]
    tasks += [
        {
            "name": f"Exporter modules and flags ({variant})",
            "ansible.builtin.template": {
                "src": str(BLACKBOX / "templates" / f"{template}.j2"),
                "dest": f"{tmp}/{variant}-{template}",
            },
            "vars": overrides,
        }
        for variant, overrides in CA_VARIANTS.items()
        for template in ("blackbox.yml", "prometheus-blackbox-exporter.default")
    ]
    play = {
        "name": "Render the blackbox configuration",
        "hosts": "mon-a",
        "gather_facts": False,
        "vars_files": [
            str(PROMETHEUS / "defaults" / "main.yml"),
            str(PROMETHEUS / "vars" / "main.yml"),
            str(BLACKBOX / "defaults" / "main.yml"),
            str(BLACKBOX / "vars" / "main.yml"),
        ],
        "tasks": tasks,
    }
    res = run_playbook(tmp, _inventory(), [play])
    assert res.returncode == 0, res.stdout + res.stderr
    return tmp


def _job(tmp: Path, variant: str, name: str) -> dict[str, Any] | None:
    config = yaml.safe_load((tmp / f"prometheus-{variant}.yml").read_text())
    jobs = [j for j in config["scrape_configs"] if j["job_name"] == name]
    return jobs[0] if jobs else None


def _probes(job: dict[str, Any]) -> dict[str, str]:
    return {target: group["labels"]["module"] for group in job["static_configs"] for target in group["targets"]}


def test_default_probes_are_the_public_endpoints_of_every_proxy(rendered: Path) -> None:
    job = _job(rendered, "default", "blackbox")
    assert job is not None
    # /health and /ready must answer {"status": "ok"}: the SPA's fallback answers
    # 200 (index.html) to any unknown path.
    modules = {"/health": "http_status_ok", "/ready": "http_status_ok", "/": "http_2xx"}
    assert _probes(job) == {
        f"https://{host}{path}": module for host in ("[2001:db8::10]", "192.0.2.11") for path, module in modules.items()
    }
    assert job["metrics_path"] == "/probe"
    assert all(group["labels"]["prober"] == "mon-a" for group in job["static_configs"])


def test_probes_go_through_the_local_exporter_with_target_and_module(rendered: Path) -> None:
    job = _job(rendered, "default", "blackbox")
    assert job is not None
    relabel = {
        (tuple(r.get("source_labels", [])), r["target_label"]): r.get("replacement") for r in job["relabel_configs"]
    }
    assert (("__address__",), "__param_target") in relabel
    assert (("module",), "__param_module") in relabel
    assert (("__param_target",), "instance") in relabel
    assert relabel[((), "__address__")] == "127.0.0.1:9115"


def test_extra_targets_are_added_by_module(rendered: Path) -> None:
    job = _job(rendered, "extra", "blackbox")
    assert job is not None
    probes = _probes(job)
    assert probes["https://status.example.com/"] == "http_2xx"
    assert probes["192.0.2.40:5432"] == "tcp_connect"
    assert len(probes) == 8
    only = _job(rendered, "only-extra", "blackbox")
    assert only is not None
    assert _probes(only) == {"192.0.2.40:5432": "tcp_connect"}


def test_no_probes_or_disabled_gives_no_job(rendered: Path) -> None:
    assert _job(rendered, "none", "blackbox") is None
    assert _job(rendered, "disabled", "blackbox") is None
    assert _job(rendered, "disabled", "blackbox_exporter") is None
    exporter = _job(rendered, "default", "blackbox_exporter")
    assert exporter is not None
    assert exporter["static_configs"][0]["targets"] == ["192.0.2.2:9115"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_configuration_passes_promtool(rendered: Path, variant: str) -> None:
    assert PROMTOOL is not None, "promtool is missing on the control node: apt-get install prometheus"
    res = subprocess.run(
        [PROMTOOL, "check", "config", "--syntax-only", str(rendered / f"prometheus-{variant}.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_exporter_modules_verify_tls(rendered: Path) -> None:
    modules = yaml.safe_load((rendered / "ca-blackbox.yml").read_text())["modules"]
    assert set(modules) == {"http_2xx", "http_status_ok", "tcp_connect"}
    assert modules["http_status_ok"]["http"]["fail_if_body_not_matches_regexp"] == ['"status"\\s*:\\s*"ok"']
    assert modules["http_status_ok"]["http"]["tls_config"] == modules["http_2xx"]["http"]["tls_config"]
    assert modules["http_2xx"]["prober"] == "http"
    assert modules["http_2xx"]["http"]["tls_config"] == {
        "insecure_skip_verify": False,
        "ca_file": "/etc/prometheus/blackbox-ca.crt",
    }
    assert modules["tcp_connect"]["prober"] == "tcp"
    system = yaml.safe_load((rendered / "system-blackbox.yml").read_text())["modules"]
    assert system["http_2xx"]["http"]["tls_config"] == {"insecure_skip_verify": False}


def test_exporter_listens_on_loopback_and_the_service_address(rendered: Path) -> None:
    flags = (rendered / "ca-prometheus-blackbox-exporter.default").read_text()
    assert "--web.listen-address=127.0.0.1:9115" in flags
    assert "--web.listen-address=192.0.2.2:9115" in flags
    assert "0.0.0.0" not in flags


PREFLIGHT = [
    {
        "name": "Probe inputs",
        "hosts": "monitoring",
        "gather_facts": True,
        "tasks": [
            {
                "name": "Blackbox exporter inputs",
                "ansible.builtin.include_role": {
                    "name": "aiinfra.platform.blackbox_exporter",
                    "tasks_from": "preflight",
                },
            },
            {
                "name": "Prometheus inputs",
                "ansible.builtin.include_role": {"name": "aiinfra.platform.prometheus", "tasks_from": "preflight"},
            },
            {"name": "Passed", "ansible.builtin.debug": {"msg": "PROBE PREFLIGHT PASSED"}},
        ],
    }
]


BAD: dict[str, tuple[dict[str, Any], list[str]]] = {
    "url-host": (
        {"prometheus_blackbox_extra_targets": [{"target": "https:///health", "module": "http_2xx"}]},
        ["prometheus_blackbox_extra_targets entry", "an http(s) URL with a host"],
    ),
    "tcp-port": (
        {"prometheus_blackbox_extra_targets": [{"target": "192.0.2.40", "module": "tcp_connect"}]},
        ["prometheus_blackbox_extra_targets entry", "host:port"],
    ),
    "module": (
        {"prometheus_blackbox_targets": [{"target": "https://192.0.2.40/", "module": "icmp"}]},
        ["prometheus_blackbox_targets entry", "module (one of http_2xx, http_status_ok, tcp_connect)"],
    ),
    "proxy-probe": (
        {"prometheus_blackbox_proxy_probes": [{"path": "health", "module": "http_2xx"}]},
        ["prometheus_blackbox_proxy_probes needs path (starting with /)"],
    ),
    "exporter": (
        {"prometheus_blackbox_exporter": "localhost"},
        ["prometheus_blackbox_exporter (localhost) must be host:port"],
    ),
    "timeout": ({"blackbox_exporter_timeout": "5 seconds"}, ["blackbox_exporter_timeout (5 seconds)"]),
    "prober": (
        {"blackbox_exporter_modules_extra": {"ping": {"icmp": {}}}},
        ["module of blackbox_exporter_modules_extra needs a prober"],
    ),
}


@pytest.fixture(scope="module")
def preflight(tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    """One check-mode run, one monitoring host per case (each fails on its own)."""
    tmp = tmp_path_factory.mktemp("preflight")
    inventory = _inventory(prometheus_blackbox_extra_targets=EXTRA)
    hosts = inventory["all"]["children"]["monitoring"]["hosts"]
    for name, (hostvars, _) in BAD.items():
        hosts[name] = {"platform_address": "192.0.2.3", **hostvars}
    return run_batch(tmp, inventory, PREFLIGHT, "--check", "--limit", "monitoring")


def test_good_probe_inputs_pass(preflight: BatchRun) -> None:
    good = preflight["mon-a"]
    assert not good.failed and good.changed == 0, good


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_probe_inputs_stop_in_preflight(preflight: BatchRun, case: str) -> None:
    assert_stopped(preflight, case, *BAD[case][1])
