"""RabbitMQ helpers for the rabbitmq scenario's tests and bench: the AMQP probe on the nodes, secrets, cluster state."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from infra import Host

PROBE = "/usr/local/bin/amqp-probe"


def secret(name: str) -> str:
    """A password the scenario generated with the password lookup (MOLECULE_EPHEMERAL_DIRECTORY/secrets)."""
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets" / name
    return path.read_text().split()[0]


def probe(node: Host, command: str, password: str, **options: Any) -> dict[str, Any]:
    """Run the AMQP probe on a node; options become --long-flags (host= is the broker to connect to)."""
    flags = " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in options.items())
    res = node.run(f"AMQP_PASSWORD={shlex.quote(password)} {PROBE} {command} {flags}")
    try:
        answer: dict[str, Any] = json.loads(res.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"amqp-probe {command} failed (rc {res.rc}): {res.stdout} {res.stderr}") from exc
    return answer


def cluster_status(host: Host) -> dict[str, Any]:
    """rabbitmqctl cluster_status of the node as a dict."""
    status: dict[str, Any] = json.loads(host.check_output("rabbitmqctl cluster_status --formatter json"))
    return status


def node_name(host: Host) -> str:
    """rabbit@<short hostname> of the node."""
    short: str = host.check_output("hostname -s").strip()
    return f"rabbit@{short}"
