"""Bad elasticsearch inputs stop in the role's preflight entry point with a message naming the fix.

One ansible-playbook run in check mode over the local connection, the way
playbooks/preflight.yml calls role preflights: each host of the inventory is one case
(its own cluster group where the case is about the group), and the JSON callback tells
which host stopped with which message. Nothing can change here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from infra.playbook import BatchRun, assert_passed, assert_stopped, run_batch

SECRETS = {
    "elasticsearch_admin_password": "admin-password-0123456789",
    "elasticsearch_elastic_password": "elastic-password-0123456789",
    "elasticsearch_app_password": "app-password-0123456789",
    "elasticsearch_monitoring_password": "monitoring-password-0123456789",
}
PASSED = "ELASTICSEARCH PREFLIGHT PASSED"
# Each case: group (its own cluster), host vars (without secrets unless overridden).
CASES: dict[str, dict[str, Any]] = {
    "good": {},
    "heap-too-big": {"elasticsearch_heap_mb": 4096, "elasticsearch_memory_mb": 2048},
    "host-too-small": {"elasticsearch_memory_mb": 400},  # the 512 MiB floor does not fit
    "short-password": {"elasticsearch_app_password": "too-short"},
    "wildcard-address": {"platform_address": "0.0.0.0"},
    "bad-version": {"elasticsearch_version": "7.17.0"},
    "deb-missing": {"elasticsearch_install_source": "deb", "elasticsearch_deb_file": "/nonexistent/es.deb"},
}
# Cases that need several hosts in one group: group -> host -> host vars.
GROUPS: dict[str, dict[str, dict[str, Any]]] = {
    "es_noaddr": {"noaddr-a": {"platform_address": "192.0.2.31"}, "noaddr-b": {}},
    "es_two": {"two-a": {"platform_address": "192.0.2.41"}, "two-b": {"platform_address": "192.0.2.42"}},
    "es_datanode": {
        "dn-a": {"platform_address": "192.0.2.51"},
        "dn-b": {"platform_address": "192.0.2.52"},
        "dn-c": {"platform_address": "192.0.2.53", "elasticsearch_node_roles": ["data", "ingest"]},
    },
    "es_three": {
        "three-a": {"platform_address": "192.0.2.61"},
        "three-b": {"platform_address": "192.0.2.62"},
        "three-c": {"platform_address": "192.0.2.63"},
    },
}


def _deb(tmp: Path, version: str) -> Path:
    """A stand-in elasticsearch .deb (control fields only) for the version check."""
    root = tmp / f"deb-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: elasticsearch\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: test <test@example.invalid>\nDescription: stand-in for the preflight test\n"
    )
    out = tmp / f"elasticsearch-{version}.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    """The one run: a host per case, read back per host."""
    tmp = tmp_path_factory.mktemp("es-preflight")
    cases = dict(CASES)
    cases["deb-wrong-version"] = {
        "elasticsearch_install_source": "deb",
        "elasticsearch_deb_file": str(_deb(tmp, "8.11.2")),
    }
    cases["deb-good"] = {"elasticsearch_install_source": "deb", "elasticsearch_deb_file": str(_deb(tmp, "8.11.3"))}
    children: dict[str, Any] = {}
    for index, (name, hostvars) in enumerate(cases.items()):
        group = "es_" + name.replace("-", "_")
        children[group] = {
            "hosts": {name: {"platform_address": f"192.0.2.{100 + index}", **hostvars}},
            "vars": {"elasticsearch_cluster_group": group},
        }
    for group, members in GROUPS.items():
        children[group] = {"hosts": members, "vars": {"elasticsearch_cluster_group": group}}
    without_elastic = {k: v for k, v in SECRETS.items() if k != "elasticsearch_elastic_password"}
    children["es_no_password"] = {
        "hosts": {"no-password": {"platform_address": "192.0.2.99", **without_elastic}},
        "vars": {"elasticsearch_cluster_group": "es_no_password"},
    }
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "elasticsearch_memory_mb": 4096,
            },
            "children": children,
        }
    }
    # Secrets as host vars (the no-password host has its own set).
    for group in children.values():
        for name, hostvars in group["hosts"].items():
            if name != "no-password":
                group["hosts"][name] = {**SECRETS, **hostvars}
    play = [
        {
            "name": "Elasticsearch preflight",
            "hosts": "all",
            # min: the distribution, not the network (a host without platform_address has no address)
            "gather_facts": True,
            "gather_subset": ["min"],
            "tasks": [
                {
                    "name": "Elasticsearch inputs",
                    "ansible.builtin.include_role": {
                        "name": "aiinfra.platform.elasticsearch",
                        "tasks_from": "preflight",
                    },
                },
                {"name": "Preflight passed", "ansible.builtin.debug": {"msg": PASSED}},
            ],
        }
    ]
    run = run_batch(tmp, inventory, play, "--check")
    for secret in SECRETS.values():
        assert secret not in run.output, "a secret reached the output"
    for host in run:
        assert run[host].changed == 0, f"{host} changed something in preflight"
    return run


def _warnings(run: BatchRun, host: str) -> list[str]:
    """The warnings (debug messages) preflight gave host."""
    return [
        str(result["msg"])
        for _, result in run[host].results
        if not result.get("failed") and str(result.get("msg", "")).startswith("WARNING:")
    ]


def _stopped(outcome: BatchRun, host: str, *needles: str) -> None:
    assert_stopped(outcome, host, *needles, later=["Preflight passed"])


@pytest.mark.parametrize("host", ["good", "deb-good", "three-a", "three-b", "three-c"])
def test_good_inputs_pass_without_warning(outcome: BatchRun, host: str) -> None:
    assert_passed(outcome, host, "Preflight passed", PASSED)
    assert _warnings(outcome, host) == []


def test_heap_larger_than_the_host(outcome: BatchRun) -> None:
    _stopped(
        outcome,
        "heap-too-big",
        "heap of heap-too-big would be 4096 MiB but the host has 2048 MiB",
        "elasticsearch_heap_mb",
    )


def test_host_smaller_than_the_heap_floor(outcome: BatchRun) -> None:
    _stopped(outcome, "host-too-small", "would be 512 MiB but the host has 400 MiB")


def test_missing_password(outcome: BatchRun) -> None:
    _stopped(outcome, "no-password", "elasticsearch_elastic_password")


def test_short_password(outcome: BatchRun) -> None:
    _stopped(outcome, "short-password", "elasticsearch_app_password is missing, shorter than 16 characters")


def test_host_in_the_group_without_an_address(outcome: BatchRun) -> None:
    for host in ("noaddr-a", "noaddr-b"):
        _stopped(outcome, host, "without an address: noaddr-b.", "platform_address")


def test_wildcard_address(outcome: BatchRun) -> None:
    _stopped(outcome, "wildcard-address", "elasticsearch_listen_address (0.0.0.0)", "platform_address")


def test_version_that_is_not_8(outcome: BatchRun) -> None:
    _stopped(outcome, "bad-version", "elasticsearch_version (7.17.0)")


def test_supplied_deb_missing_or_of_another_version(outcome: BatchRun) -> None:
    _stopped(outcome, "deb-missing", "elasticsearch_deb_file (/nonexistent/es.deb) is not a file on the control node")
    _stopped(outcome, "deb-wrong-version", '"elasticsearch 8.11.2", not elasticsearch 8.11.3')


@pytest.mark.parametrize(("host", "masters"), [("two-a", 2), ("dn-a", 2)])
def test_fewer_than_three_master_eligible_nodes_warn(outcome: BatchRun, host: str, masters: int) -> None:
    assert_passed(outcome, host, "Preflight passed", PASSED)
    (warning,) = _warnings(outcome, host)
    assert f"has {masters} master-eligible node(s): it cannot survive the loss of one" in warning
