#!/usr/bin/env python3
"""RabbitMQ bench: converge and idempotent-run times of the rabbitmq scenario, and the clusters'
publish/consume throughput through one quorum queue (persistent messages, publisher confirms).

Runs only against the scenario's own containers (molecule-rabbitmq network, 172.29.21.0/24):
  molecule destroy, create, prepare      (not timed)
  molecule converge                      (timed: first converge, a 3-node cluster and a single node)
  molecule converge                      (timed: idempotent run; must report changed=0)
  amqp-probe bench on the first node of each cluster, --count messages (fixed)
  molecule destroy                       (unless --keep)

Usage: python tests/bench/rabbitmq.py [--count 20000] [--size 512] [--window 256] [--keep] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIO = "rabbitmq"
# label -> (node the client runs on, quorum queue replicas)
CLUSTERS = {"Debian 12 / RabbitMQ 3.10, 3 nodes": ("mq-d12-1", 3), "Debian 13 / RabbitMQ 4.x, 1 node": ("mq-d13-1", 1)}


def molecule(*args: str) -> tuple[float, str]:
    """Run a molecule command for the scenario; return (seconds, output). Fails loudly."""
    env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}", ANSIBLE_FORCE_COLOR="0")
    started = time.monotonic()
    res = subprocess.run(
        ["molecule", *args, "-s", SCENARIO], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.monotonic() - started
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-4000:])
        raise SystemExit(f"molecule {' '.join(args)} failed (rc {res.returncode})")
    return elapsed, res.stdout + res.stderr


def changed_total(output: str) -> int:
    """Sum of changed= over the play recap."""
    return sum(int(n) for n in re.findall(r"\bchanged=(\d+)", re.sub(r"\x1b\[[0-9;]*m", "", output)))


def admin_password() -> str:
    """The admin password the scenario generated (newest ephemeral directory of this scenario)."""
    candidates = sorted(
        (Path.home() / ".ansible" / "tmp").glob(f"molecule.*.{SCENARIO}/secrets/rabbitmq_admin"),
        key=lambda p: p.stat().st_mtime,
    )
    if not candidates:
        raise SystemExit("no generated admin password found: did the converge run?")
    return candidates[-1].read_text().split()[0]


def throughput(node: str, password: str, count: int, size: int, window: int) -> dict[str, float]:
    """Run the probe's bench on a node of the scenario, against that node's service address."""
    address = subprocess.run(
        ["docker", "inspect", "-f", '{{(index .NetworkSettings.Networks "molecule-rabbitmq").IPAddress}}', node],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not address.startswith("172.29.21."):
        raise SystemExit(f"{node} is not on the scenario's network ({address!r}); refusing to bench it")
    cmd = [
        "docker", "exec", "-e", f"AMQP_PASSWORD={password}", node, "amqp-probe", "bench",
        "--host", address, "--user", "admin", "--vhost", "/", "--queue", "bench.quorum",
        "--count", str(count), "--size", str(size), "--window", str(window),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if res.returncode != 0:
        raise SystemExit(f"bench on {node} failed: {res.stdout} {res.stderr}")
    result: dict[str, float] = json.loads(res.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20000, help="messages per cluster (fixed count)")
    parser.add_argument("--size", type=int, default=512, help="message body size in bytes")
    parser.add_argument("--window", type=int, default=256, help="unconfirmed publishes in flight / consumer prefetch")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    parser.add_argument(
        "--reuse", action="store_true", help="throughput only, on the running converged scenario (no molecule steps)"
    )
    args = parser.parse_args()
    if not 1 <= args.count <= 200000:
        parser.error("--count must be between 1 and 200000")

    idem_changed = 0
    if not args.reuse:
        molecule("destroy")
        setup_s, _ = molecule("create")
        molecule("prepare")
        converge_s, converge_out = molecule("converge")
        idem_s, idem_out = molecule("converge")
        idem_changed = changed_total(idem_out)

        print(f"rabbitmq scenario (4 nodes: a 3-node cluster and a single node, in parallel); create {setup_s:.0f} s")
        print(f"  converge (fresh)      {converge_s:7.1f} s   changed={changed_total(converge_out)}")
        print(f"  converge (idempotent) {idem_s:7.1f} s   changed={idem_changed}")
        print(f"  idempotent / fresh    {idem_s / converge_s:7.2f}")

    password = admin_password()
    rates: dict[str, dict[str, float]] = {}
    for label, (node, _replicas) in CLUSTERS.items():
        rates[label] = throughput(node, password, args.count, args.size, args.window)
    print(
        f"throughput: {args.count} persistent messages of {args.size} B, one quorum queue (one replica per node), "
        f"publisher confirms ({args.window} in flight), consumer prefetch {args.window}, client on the first node"
    )
    for label, r in rates.items():
        print(
            f"  {label}: publish {r['publish_per_s']:>7.0f} msg/s ({r['publish_s']:.1f} s)"
            f"   consume {r['consume_per_s']:>7.0f} msg/s ({r['consume_s']:.1f} s)   received {r['received']:.0f}"
        )
    first, second = rates.values()
    print(
        f"  ratio 3 replicas (3.10) / 1 replica (4.x): publish {first['publish_per_s'] / second['publish_per_s']:.2f}"
        f"   consume {first['consume_per_s'] / second['consume_per_s']:.2f}"
    )
    if not args.keep:
        molecule("destroy")
    return 1 if idem_changed else 0


if __name__ == "__main__":
    sys.exit(main())
