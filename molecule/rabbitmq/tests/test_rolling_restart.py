"""playbooks/restart.yml on the three-node cluster: a rolling restart under a publish/consume load loses no
confirmed message, and the nodes go down one at a time. Bad requests stop before any host is touched.

The load runs on the Debian 13 node (its own cluster, outside the restart's --limit) against the three
Debian 12 nodes: persistent messages with publisher confirms into a quorum queue with three replicas,
consumed with manual acks at the same time; both sides reconnect to another node when theirs goes away.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from infra import Host, default_address
from infra.playbook import REPO, collection_playbook
from infra.rabbitmq import cluster_status, finish_soak, node_name, secret, start_soak, unit_times

STOP_FILE = "/tmp/amqp-soak.stop"


def _restart(request: pytest.FixtureRequest, *args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook playbooks/restart.yml against the scenario's inventory, as an operator runs it."""
    # The whole inventory directory: the group tree (rabbitmq > rabbitmq_bookworm) is in its `hosts` file.
    inventory = Path(request.config.option.ansible_inventory)
    directory = inventory.parent if inventory.is_file() else inventory
    return collection_playbook(directory, "restart.yml", *args, timeout=600)


@pytest.fixture(scope="module")
def client(request: pytest.FixtureRequest) -> str:
    """The Debian 13 node's container, where the load runs (not restarted: its cluster is the other one)."""
    from testinfra.utils.ansible_runner import AnsibleRunner

    names: list[str] = AnsibleRunner(request.config.option.ansible_inventory).get_hosts("rabbitmq_trixie")
    return names[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-e", "restart_tier=mysql"], "restart_tier must be one of rabbitmq, redis, postgres (got 'mysql')"),
        ([], "restart_tier must be one of rabbitmq, redis, postgres (got 'nothing')"),
        (["-e", "restart_tier=redis"], "Group 'redis' for restart_tier=redis has no hosts"),
        (
            ["-e", "restart_tier=rabbitmq", "-e", "restart_upgrade=maybe"],
            "restart_upgrade must be true or false (got 'maybe')",
        ),
    ],
)
def test_bad_requests_stop_before_any_host_is_touched(
    request: pytest.FixtureRequest, ha_cluster: list[Host], extra: list[str], message: str
) -> None:
    before = [unit_times(node) for node in ha_cluster]
    res = _restart(request, *extra)
    assert res.returncode != 0, res.stdout
    assert message in " ".join(res.stdout.split()), res.stdout[-3000:]
    assert "one host at a time" not in res.stdout
    assert [unit_times(node) for node in ha_cluster] == before


def test_rolling_restart_under_load_loses_no_confirmed_message(
    request: pytest.FixtureRequest, ha_cluster: list[Host], client: str
) -> None:
    brokers = [default_address(node) for node in ha_cluster]
    assert all(address.startswith("172.29.21.") for address in brokers), brokers
    before = [unit_times(node) for node in ha_cluster]
    soak = start_soak(
        client,
        secret("rabbitmq_admin"),
        brokers,
        user="admin",
        vhost="/",
        queue="soak.quorum",
        rate=10,
        count=9000,
        max_seconds=900,
        stop_file=STOP_FILE,
    )
    try:
        res = _restart(request, "-e", "restart_tier=rabbitmq", "--limit", "rabbitmq_bookworm")
    finally:
        report: dict[str, Any] = finish_soak(soak, client, STOP_FILE, timeout=240)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    # The load's figures outlive the scenario (destroy removes its ephemeral directory).
    figures = REPO / ".cache" / "test-logs" / "rabbitmq-restart.json"
    figures.parent.mkdir(parents=True, exist_ok=True)
    figures.write_text(json.dumps(report, indent=2))
    print(report)

    # Every message the broker confirmed was consumed: same count, same ids, nothing foreign.
    assert report["stopped_by"] == "stop-file", report  # the load ran until the restart was over
    assert report["confirmed"] >= 300, report
    assert report["missing"] == [], report
    assert report["unexpected"] == [], report
    assert report["consumed_unique"] >= report["confirmed_unique"] == report["confirmed"], report
    # The publisher's node (the first) went down under it: the load really crossed the restarts.
    assert report["publisher_reconnects"] >= 1, report

    # Each node restarted, one at a time in inventory order: a node went down only after the previous one
    # was running again.
    after = [unit_times(node) for node in ha_cluster]
    for old, new in zip(before, after, strict=True):
        assert new["down"] > old["up"] and new["up"] > new["down"], (old, new)
    for previous, following in itertools.pairwise(after):
        assert following["down"] > previous["up"], after
    # The playbook's own order: each node's restart task ran after the previous node's wait for its queues.
    restarted = [line for line in res.stdout.splitlines() if line.startswith("changed: [")]
    assert restarted == [f"changed: [{name}]" for name in _names(ha_cluster)], restarted

    status = cluster_status(ha_cluster[0])
    assert sorted(status["running_nodes"]) == sorted(node_name(node) for node in ha_cluster)
    assert not status["partitions"]


def _names(nodes: list[Host]) -> list[str]:
    return [node.check_output("hostname -s").strip() for node in nodes]
