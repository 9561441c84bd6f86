from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

# Each distro group is one cluster: three nodes on Debian 12, one on Debian 13.
CLUSTER_GROUPS = ["rabbitmq_bookworm", "rabbitmq_trixie"]
HA_GROUP = "rabbitmq_bookworm"


def _nodes(request: pytest.FixtureRequest, group: str) -> list[Any]:
    inventory = request.config.option.ansible_inventory
    names = AnsibleRunner(inventory).get_hosts(group)
    assert names, group
    return [testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}") for name in names]


@pytest.fixture(scope="module", params=CLUSTER_GROUPS)
def cluster(request: pytest.FixtureRequest) -> list[Any]:
    """The nodes of one cluster in inventory order, repeated to three so tests can name first/second/third
    (on the single Debian 13 node they are the same node)."""
    nodes = _nodes(request, request.param)
    return (nodes * 3)[: max(3, len(nodes))]


@pytest.fixture(scope="module")
def ha_cluster(request: pytest.FixtureRequest) -> list[Any]:
    """The three-node cluster (Debian 12): availability with a node down, rolling restarts."""
    nodes = _nodes(request, HA_GROUP)
    assert len(nodes) == 3, nodes
    return nodes


@pytest.fixture(scope="module")
def cluster_members(request: pytest.FixtureRequest) -> dict[str, list[str]]:
    """Inventory hostnames of each cluster group."""
    inventory = request.config.option.ansible_inventory
    runner = AnsibleRunner(inventory)
    return {group: sorted(runner.get_hosts(group)) for group in CLUSTER_GROUPS}
