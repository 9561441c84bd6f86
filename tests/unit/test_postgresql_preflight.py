"""Bad postgresql inputs stop in the role's preflight, before any task that changes a host.

One check-mode run of the whole role against several local-connection hosts, one per
case (like test_preflight.py does for site.yml), so nothing on this machine changes.
A fake pg_lsclusters stands in for a host that already holds a cluster of another version.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from infra.playbook import BatchRun, assert_stopped, run_batch

GOOD = "x" * 20
BASE = {
    "ansible_connection": "local",
    "ansible_python_interpreter": sys.executable,
    "platform_admin_networks": ["127.0.0.0/8"],
    "internal_ca_dir": "/nonexistent/ca",
    "postgresql_admin_password": GOOD,
    "postgresql_exporter_password": GOOD,
    "postgresql_memory_mb": 1024,
    "postgresql_users": [{"name": "app", "password": GOOD}],
}
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "missing-admin": ({"postgresql_admin_password": None}, "postgresql_admin_password"),
    "short-exporter": ({"postgresql_exporter_password": "short"}, "postgresql_exporter_password"),
    "short-user": ({"postgresql_users": [{"name": "app", "password": "tooshort"}]}, "postgresql_users[app].password"),
    "memory": ({"postgresql_memory_mb": 10**8}, "postgresql_memory_mb (100000000) is larger than the memory"),
    "shared-buffers": (
        {"postgresql_settings": {"shared_buffers": "64GB"}},
        "shared_buffers (64GB, from postgresql_settings) is larger than the memory",
    ),
    "version-9": ({"postgresql_version": 9}, "postgresql_version 9 is not supported"),
    "version-not-in-distro": ({"postgresql_version": 16}, "set postgresql_package_source: pgdg"),
}
# The first task of the role after preflight; it must never start for a failed host.
FIRST_TASK_AFTER_PREFLIGHT = "Is the PostgreSQL server installed"


def run(tmp_path: Path, hosts: dict[str, dict[str, Any]], fake_cluster: str | None = None) -> BatchRun:
    inventory = {"all": {"vars": BASE, "children": {"postgres": {"hosts": hosts}}}}
    play = [{"name": "Role", "hosts": "postgres", "roles": [{"role": "aiinfra.platform.postgresql"}]}]
    path = os.environ["PATH"]
    if fake_cluster is not None:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        fake = bindir / "pg_lsclusters"
        fake.write_text(f"#!/bin/sh\necho '{fake_cluster}'\n")
        fake.chmod(0o755)
        path = f"{bindir}:{path}"
    # Preflight and the install step only: nothing may talk to a server on this machine.
    return run_batch(
        tmp_path, inventory, play, "--check", "--skip-tags", "postgresql_configure,postgresql_service", PATH=path
    )


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    hosts = {name: overrides for name, (overrides, _) in CASES.items()}
    hosts["good"] = {}
    return run(tmp_path_factory.mktemp("bad"), hosts)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_stops_in_preflight(bad_inputs: BatchRun, case: str) -> None:
    assert_stopped(bad_inputs, case, CASES[case][1], later=[FIRST_TASK_AFTER_PREFLIGHT])


def test_good_input_gets_past_preflight(bad_inputs: BatchRun) -> None:
    """The control case: the same run lets a good host through to the install step."""
    good = bad_inputs["good"]
    assert not good.failed, good
    assert good.ran_task(FIRST_TASK_AFTER_PREFLIGHT), good


def test_a_cluster_of_another_version_stops_with_the_upgrade_path(tmp_path: Path) -> None:
    # This control node is Debian 12 (PostgreSQL 15); pretend it holds a 13 cluster.
    result = run(
        tmp_path,
        {"holder": {}},
        fake_cluster="13 main 5432 online postgres /var/lib/postgresql/13/main /var/log/postgresql/x.log",
    )
    assert_stopped(
        result,
        "holder",
        "holds PostgreSQL 13",
        "pg_upgradecluster -m upgrade 13 main",
        "will not create an empty",
        later=[FIRST_TASK_AFTER_PREFLIGHT],
    )
