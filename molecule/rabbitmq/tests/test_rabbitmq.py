"""The rabbitmq role, verified by using the clusters: AMQP, policies, HA, management API and metrics.

Per-node tests use the `host` fixture (every node); cluster tests use the
`cluster` fixture (the three-node Debian 12 cluster and the single Debian 13
node) and publish on one node, consume on another; `ha_cluster` (Debian 12)
stops and restarts nodes.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from infra import Host, default_address, http_get
from infra.rabbitmq import cluster_status, node_name, probe, secret

ADMIN, APP, MONITORING = "admin", "app", "monitoring"


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return {
        ADMIN: secret("rabbitmq_admin"),
        APP: secret("rabbitmq_app"),
        MONITORING: secret("rabbitmq_monitoring"),
    }


def _drain(host: Host, password: str, vhost: str, queue: str) -> list[dict[str, Any]]:
    """Take every message out of a queue (as admin) and return them."""
    got = probe(host, "get", password, user=ADMIN, vhost=vhost, queue=queue, count=1000)
    messages: list[dict[str, Any]] = got["messages"]
    return messages


# --- every node -----------------------------------------------------------


def test_service_running_and_enabled(host: Host) -> None:
    svc = host.service("rabbitmq-server")
    assert svc.is_running
    assert svc.is_enabled
    assert host.run("rabbitmq-diagnostics -q check_running").rc == 0
    assert host.run("rabbitmq-diagnostics -q check_local_alarms").rc == 0


def test_listeners_on_loopback_and_service_address_only(host: Host) -> None:
    address = default_address(host)
    listening = set(host.socket.get_listening_sockets())
    expected = {
        "tcp://127.0.0.1:5672",
        f"tcp://{address}:5672",
        f"tcp://{address}:15672",
        f"tcp://{address}:15692",
        f"tcp://{address}:25672",
        "tcp://127.0.0.1:4369",
        f"tcp://{address}:4369",
    }
    assert expected <= listening, expected - listening
    for port in (5672, 15672, 15692, 25672, 4369):
        assert f"tcp://0.0.0.0:{port}" not in listening
        assert f"tcp://:::{port}" not in listening


def test_open_file_limit_from_the_systemd_override(host: Host) -> None:
    assert host.check_output("systemctl show -p LimitNOFILE --value rabbitmq-server").strip() == "100000"
    # systemd cannot raise a limit above its own: in a container that is the engine's hard limit.
    ceiling = int(
        next(ln for ln in host.file("/proc/1/limits").content_string.splitlines() if "open files" in ln).split()[4]
    )
    pid = host.check_output("systemctl show -p MainPID --value rabbitmq-server").strip()
    limits = host.file(f"/proc/{pid}/limits").content_string
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
    assert line.split()[3:5] == [str(min(100000, ceiling))] * 2, line


def test_plugins_enabled(host: Host) -> None:
    enabled = host.check_output("rabbitmq-plugins list -E -m")
    assert "rabbitmq_management" in enabled
    assert "rabbitmq_prometheus" in enabled


def test_cluster_status_lists_every_node_of_its_cluster(host: Host, cluster_members: dict[str, list[str]]) -> None:
    me = host.check_output("hostname -s").strip()
    group = next(g for g, members in cluster_members.items() if me in members)
    expected = sorted(f"rabbit@{member}" for member in cluster_members[group])
    status = cluster_status(host)
    assert sorted(status["disk_nodes"]) == expected
    assert sorted(status["running_nodes"]) == expected
    assert not status["partitions"]
    assert status["cluster_name"] == group


def test_guest_is_gone(host: Host) -> None:
    users = json.loads(host.check_output("rabbitmqctl list_users --quiet --formatter json"))
    assert "guest" not in {u["user"] for u in users}
    # From loopback, where guest/guest would otherwise be accepted.
    answer = probe(host, "login", "guest", user="guest", vhost="/")
    assert answer["ok"] is False
    assert "ACCESS_REFUSED" in answer["error"] or "ProbableAuthenticationError" in answer["error"]


def test_app_user_only_on_its_vhosts(host: Host, passwords: dict[str, str]) -> None:
    address = default_address(host)
    for vhost in ("/app", "/tasks"):
        assert probe(host, "login", passwords[APP], host=address, user=APP, vhost=vhost) == {"ok": True}
    refused = probe(host, "login", passwords[APP], host=address, user=APP, vhost="/")
    assert refused["ok"] is False
    assert "ProbableAccessDeniedError" in refused["error"] or "access" in refused["error"].lower()
    wrong = probe(host, "login", passwords[APP] + "x", host=address, user=APP, vhost="/app")
    assert wrong["ok"] is False


def test_monitoring_user_cannot_use_messaging(host: Host, passwords: dict[str, str]) -> None:
    answer = probe(
        host, "publish", passwords[MONITORING], user=MONITORING, vhost="/app", exchange="events", routing_key="x"
    )
    assert "ACCESS_REFUSED" in answer.get("error", ""), answer
    answer = probe(host, "get", passwords[MONITORING], user=MONITORING, vhost="/app", queue="events.audit")
    assert "ACCESS_REFUSED" in answer.get("error", ""), answer


def test_management_api(host: Host, passwords: dict[str, str]) -> None:
    base = f"http://{default_address(host)}:15672/api"
    overview = http_get(host, f"{base}/overview", "-f", "-u", f"{ADMIN}:{passwords[ADMIN]}")
    assert overview.rc == 0, overview.stderr
    assert json.loads(overview.stdout)["cluster_name"].startswith("rabbitmq_")
    for user, password in ((ADMIN, passwords[ADMIN] + "x"), (APP, passwords[APP])):
        res = http_get(host, f"{base}/overview", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{user}:{password}")
        assert res.stdout == "401", (user, res.stdout)
    # The monitoring user sees every vhost's queues (it has no resource permission).
    queues = http_get(host, f"{base}/queues", "-f", "-u", f"{MONITORING}:{passwords[MONITORING]}")
    assert queues.rc == 0, queues.stderr
    names = {(q["vhost"], q["name"], q["type"]) for q in json.loads(queues.stdout)}
    assert ("/app", "tasks.index", "quorum") in names
    assert ("/tasks", "tasks.priority", "classic") in names


def test_metrics_endpoint(host: Host) -> None:
    res = http_get(host, f"http://{default_address(host)}:15692/metrics", "-f")
    assert res.rc == 0, res.stderr
    assert "rabbitmq_build_info" in res.stdout
    assert any(ln.startswith("rabbitmq_queues ") for ln in res.stdout.splitlines())


# --- each cluster -----------------------------------------------------------


def test_persistent_event_published_on_one_node_consumed_on_another(
    cluster: list[Host], passwords: dict[str, str]
) -> None:
    first, second, _ = cluster
    body = f"event-{uuid.uuid4()}"
    sent = probe(
        first,
        "publish",
        passwords[APP],
        user=APP,
        vhost="/app",
        exchange="events",
        routing_key="document.created",
        body=body,
    )
    assert sent == {"confirmed": 1, "refused": 0}
    got = probe(second, "get", passwords[APP], user=APP, vhost="/app", queue="events.audit", count=1000)
    mine = [m for m in got["messages"] if m["body"] == body]
    assert len(mine) == 1, got
    assert mine[0]["delivery_mode"] == 2


def test_app_redeclares_its_topology_with_the_same_arguments(cluster: list[Host], passwords: dict[str, str]) -> None:
    # The app's declare_topology() and worker consumer, as the app user: any argument differing from the
    # role's declarations would be a PRECONDITION_FAILED channel error.
    for node in cluster:
        assert probe(node, "declare-app", passwords[APP], user=APP, vhost="/app") == {"ok": True}
    url = f"http://{default_address(cluster[0])}:15672/api/queues/%2Fapp"
    res = http_get(cluster[0], url, "-f", "-u", f"{ADMIN}:{passwords[ADMIN]}")
    assert res.rc == 0, res.stderr
    queues = json.loads(res.stdout)
    arguments = {q["name"]: q["arguments"] for q in queues if q["name"].startswith("tasks.index")}
    assert all(q["durable"] for q in queues)
    assert arguments == {
        "tasks.index": {
            "x-dead-letter-exchange": "tasks.dlx",
            "x-dead-letter-routing-key": "tasks.index.dead",
            "x-queue-type": "quorum",
        },
        "tasks.index.dead": {"x-queue-type": "quorum"},
    }, arguments


def test_message_past_its_ttl_is_gone(cluster: list[Host], passwords: dict[str, str]) -> None:
    first, second, _ = cluster
    _drain(first, passwords[ADMIN], "/app", "tasks.index")
    body = f"task-{uuid.uuid4()}"
    sent = probe(first, "publish", passwords[APP], user=APP, vhost="/app", routing_key="tasks.index", body=body)
    assert sent["confirmed"] == 1
    time.sleep(5)  # the scenario's policy: message-ttl 4000 ms
    late = probe(second, "get", passwords[APP], user=APP, vhost="/app", queue="tasks.index", count=10)
    assert body not in [m["body"] for m in late["messages"]]
    dead = probe(second, "get", passwords[APP], user=APP, vhost="/app", queue="tasks.index.dead", count=1000, wait=10)
    expired = [m for m in dead["messages"] if m["body"] == body]
    assert expired and "expired" in expired[0]["deaths"], dead


def test_rejected_task_arrives_in_the_dead_letter_queue(cluster: list[Host], passwords: dict[str, str]) -> None:
    first, second, third = cluster
    _drain(first, passwords[ADMIN], "/app", "tasks.index")
    body = f"task-{uuid.uuid4()}"
    sent = probe(first, "publish", passwords[APP], user=APP, vhost="/app", routing_key="tasks.index", body=body)
    assert sent["confirmed"] == 1
    got = probe(second, "get", passwords[APP], user=APP, vhost="/app", queue="tasks.index", action="reject")
    assert [m["body"] for m in got["messages"]] == [body]
    dead = probe(third, "get", passwords[APP], user=APP, vhost="/app", queue="tasks.index.dead", count=1000, wait=10)
    rejected = [m for m in dead["messages"] if m["body"] == body]
    assert rejected and rejected[0]["deaths"] == ["rejected"], dead


def test_full_task_queue_refuses_publishes(cluster: list[Host], passwords: dict[str, str]) -> None:
    first = cluster[0]
    _drain(first, passwords[ADMIN], "/app", "tasks.index")
    # The scenario's policy: max-length 3, overflow reject-publish. A quorum queue
    # applies the limit once a command is committed, so one publish may overshoot.
    sent = probe(first, "publish", passwords[APP], user=APP, vhost="/app", routing_key="tasks.index", count=6)
    assert 3 <= sent["confirmed"] <= 4, sent
    assert sent["refused"] == 6 - sent["confirmed"], sent
    _drain(first, passwords[ADMIN], "/app", "tasks.index")


def test_overflow_drops_the_oldest_into_the_dead_letter_queue(cluster: list[Host], passwords: dict[str, str]) -> None:
    first, second, _ = cluster
    for queue in ("tasks.priority", "tasks.priority.dead"):
        _drain(first, passwords[ADMIN], "/tasks", queue)
    tag = uuid.uuid4().hex[:8]
    # The scenario's policy: max-length 5, overflow drop-head; the queue dead-letters to tasks.dlx.
    sent = probe(
        first,
        "publish",
        passwords[APP],
        user=APP,
        vhost="/tasks",
        exchange="tasks",
        routing_key="tasks.priority",
        body=tag,
        count=6,
    )
    assert sent == {"confirmed": 6, "refused": 0}
    dead = probe(
        second, "get", passwords[APP], user=APP, vhost="/tasks", queue="tasks.priority.dead", count=10, wait=10
    )
    assert [(m["body"], m["deaths"]) for m in dead["messages"]] == [(f"{tag}-0", ["maxlen"])]
    kept = _drain(second, passwords[ADMIN], "/tasks", "tasks.priority")
    assert sorted(m["body"] for m in kept) == [f"{tag}-{i}" for i in range(1, 6)]


def test_higher_priority_messages_are_delivered_first(cluster: list[Host], passwords: dict[str, str]) -> None:
    first, _, third = cluster
    _drain(first, passwords[ADMIN], "/tasks", "tasks.priority")
    for body, priority in (("low", 1), ("high", 9), ("mid", 5)):
        sent = probe(
            first,
            "publish",
            passwords[APP],
            user=APP,
            vhost="/tasks",
            exchange="tasks",
            routing_key="tasks.priority",
            body=body,
            priority=priority,
        )
        assert sent["confirmed"] == 1
    got = probe(third, "get", passwords[APP], user=APP, vhost="/tasks", queue="tasks.priority", count=3)
    assert [(m["body"], m["priority"]) for m in got["messages"]] == [("high", 9), ("mid", 5), ("low", 1)]


def test_quorum_queue_stays_available_with_one_node_stopped(ha_cluster: list[Host], passwords: dict[str, str]) -> None:
    first, second, third = ha_cluster
    members = first.check_output("rabbitmq-queues quorum_status events.audit -p /app --formatter json")
    assert {m["Node Name"] for m in json.loads(members)} == {node_name(h) for h in ha_cluster}
    _drain(first, passwords[ADMIN], "/app", "events.audit")
    tag = uuid.uuid4().hex[:8]
    expected = [f"{tag}-{i}" for i in range(5)]
    sent = probe(
        first,
        "publish",
        passwords[APP],
        user=APP,
        vhost="/app",
        exchange="events",
        routing_key="document.updated",
        body=tag,
        count=5,
    )
    assert sent == {"confirmed": 5, "refused": 0}
    third.check_output("systemctl stop rabbitmq-server")
    try:
        assert third.run("rabbitmq-diagnostics -q check_running").rc != 0
        got = probe(
            second, "get", passwords[APP], user=APP, vhost="/app", queue="events.audit", count=5, action="requeue"
        )
        assert sorted(m["body"] for m in got["messages"]) == expected
        # Still writable: a majority (2 of 3) confirms.
        again = probe(first, "publish", passwords[APP], user=APP, vhost="/app", exchange="events", routing_key="x")
        assert again == {"confirmed": 1, "refused": 0}
        # The restart helper the handler uses refuses to take a second node down.
        refused = second.run("/usr/local/sbin/aiinfra-rabbitmq-restart 10")
        assert refused.rc != 0
        assert second.run("rabbitmq-diagnostics -q check_running").rc == 0
    finally:
        third.check_output("systemctl start rabbitmq-server")
        third.check_output("rabbitmqctl -q await_startup --timeout 120")
        first.check_output("rabbitmqctl -q await_online_nodes 3 --timeout 120")
    # With every node back, the helper restarts a node and returns once the cluster is whole.
    rolled = second.run("/usr/local/sbin/aiinfra-rabbitmq-restart")
    assert rolled.rc == 0, rolled.stderr
    assert len(cluster_status(first)["running_nodes"]) == 3
    kept = _drain(first, passwords[ADMIN], "/app", "events.audit")
    assert sorted(m["body"] for m in kept if m["body"].startswith(tag)) == expected


def test_configuration_checker_refuses_unknown_keys(cluster: list[Host]) -> None:
    node = cluster[0]
    node.run("printf 'vm_memory_high_watermark.relativ = 0.4\\n' > /tmp/bad-rabbitmq.conf")
    bad = node.run("/usr/local/lib/aiinfra/rabbitmq-conf-check.escript /tmp/bad-rabbitmq.conf")
    assert bad.rc == 1
    assert "unknown variable: vm_memory_high_watermark.relativ" in bad.stderr
    good = node.run("/usr/local/lib/aiinfra/rabbitmq-conf-check.escript /etc/rabbitmq/rabbitmq.conf")
    assert good.rc == 0, good.stderr
