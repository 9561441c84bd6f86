"""RabbitMQ helpers for the rabbitmq scenario's tests and bench: the AMQP probe on the nodes, secrets, cluster state."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
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


def unit_times(host: Host, unit: str = "rabbitmq-server") -> dict[str, int]:
    """When the unit last stopped running and last became active (µs of the kernel's monotonic clock, which
    every container on the machine shares, so times of different nodes compare)."""
    props = ("ActiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    out = host.check_output(f"systemctl show {unit} {' '.join('-p ' + p for p in props)}")
    values = dict(line.split("=", 1) for line in out.splitlines())
    return {"down": int(values[props[0]]), "up": int(values[props[1]])}


def start_soak(container: str, password: str, brokers: list[str], **options: Any) -> subprocess.Popen[str]:
    """Start the probe's soak load (confirmed publishes and a consumer, reconnecting across brokers) in a
    container of the scenario with `docker exec`; returns once it reports that it publishes."""
    flags = [item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", str(value))]
    cmd = ["docker", "exec", "-e", f"AMQP_PASSWORD={password}", container, PROBE, "soak", "--hosts", ",".join(brokers)]
    proc = subprocess.Popen([*cmd, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith('{"started"'):
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"soak did not start: {first} {err}")
    return proc


def finish_soak(proc: subprocess.Popen[str], container: str, stop_file: str, timeout: float) -> dict[str, Any]:
    """Tell the soak to stop publishing, wait until its consumer caught up and return its report."""
    subprocess.run(["docker", "exec", container, "touch", stop_file], check=True, timeout=60)
    out, err = proc.communicate(timeout=timeout)
    try:
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise AssertionError(f"soak failed (rc {proc.returncode}): {out} {err}") from exc
    return report
