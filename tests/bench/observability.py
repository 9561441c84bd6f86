#!/usr/bin/env python3
"""Observability figures on the `observability` Molecule scenario: prints them,
asserts nothing about timing.

1. scrape targets up / total, per job, from Prometheus's /api/v1/targets;
2. seconds from `systemctl stop redis-server` on obs-data until Alertmanager
   lists RedisDown as active, and from the restart until it is gone (the
   scenario shortens the alert's `for` to 10 s; scrape/evaluation every 5 s).

Bounded: --rounds stop/start cycles (default 1, at most 3), each waiting at
most 180 s. Talks only to the scenario's own containers (docker exec).

    molecule converge -s observability && python tests/bench/observability.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import urllib.parse
from typing import Any

MON, DATA = "obs-mon", "obs-data"
TIMEOUT = 180.0


def docker_exec(container: str, *cmd: str) -> str:
    res = subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True, timeout=60, check=True)
    return res.stdout


def mon_address() -> str:
    fields = docker_exec(MON, "ip", "-4", "route", "get", "192.0.2.1").split()
    return fields[fields.index("src") + 1]


def get(url: str) -> Any:
    return json.loads(docker_exec(MON, "curl", "-sS", "--fail", "--max-time", "10", url))


def redis_down_active(am: str) -> bool:
    query = urllib.parse.urlencode({"active": "true", "silenced": "false", "inhibited": "false"})
    alerts = get(f"{am}api/v2/alerts?{query}")
    return any(a["labels"].get("alertname") == "RedisDown" for a in alerts)


def wait(condition: bool, am: str) -> float:
    start = time.monotonic()
    while redis_down_active(am) != condition:
        if time.monotonic() - start > TIMEOUT:
            raise SystemExit(f"RedisDown did not become {'active' if condition else 'resolved'} within {TIMEOUT:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, choices=range(1, 4))
    args = parser.parse_args()
    address = mon_address()
    prom = f"http://{address}:9090/monitoring/prometheus/"
    am = f"http://{address}:9093/monitoring/alertmanager/"

    targets = get(f"{prom}api/v1/targets?state=active")["data"]["activeTargets"]
    up = [t for t in targets if t["health"] == "up"]
    print(f"scrape targets up: {len(up)}/{len(targets)}")
    jobs = sorted({t["labels"]["job"] for t in targets})
    for job in jobs:
        total = sum(1 for t in targets if t["labels"]["job"] == job)
        ok = sum(1 for t in up if t["labels"]["job"] == job)
        print(f"  {job:<14} {ok}/{total}")

    if redis_down_active(am):
        raise SystemExit("RedisDown is already active: start redis-server on obs-data first")
    fired, resolved = [], []
    for _ in range(args.rounds):
        docker_exec(DATA, "systemctl", "stop", "redis-server")
        try:
            fired.append(wait(True, am))
        finally:
            docker_exec(DATA, "systemctl", "start", "redis-server")
        resolved.append(wait(False, am))
    print("for: 10s, scrape/evaluation interval: 5s, Alertmanager group_wait: 5s")
    print("redis stopped -> RedisDown active in Alertmanager: " + ", ".join(f"{s:.1f} s" for s in fired))
    print("redis started -> RedisDown gone from Alertmanager: " + ", ".join(f"{s:.1f} s" for s in resolved))


if __name__ == "__main__":
    main()
