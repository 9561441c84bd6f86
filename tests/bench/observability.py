#!/usr/bin/env python3
"""Observability figures on the lab: prints them, asserts nothing about timing.

Against the lab only (inventories/lab: the first monitoring and redis hosts,
reached over SSH like tests/lab/test_observability.py):
1. scrape targets up / total, per job and overall, from Prometheus's
   /api/v1/targets (as they are now: no waiting for a first scrape);
2. seconds from `systemctl stop redis-server` on the redis host until
   Alertmanager lists RedisDown as active, and from `systemctl start` until it
   is resolved (gone from Alertmanager's active alerts). The lab shortens the
   alert's `for` (inventories/lab/group_vars/monitoring.yml); the rule's `for`,
   the scrape/evaluation intervals and Alertmanager's group_wait are read from
   the running services and printed with the figures. Polled about once a second.

Bounded: --rounds stop/start cycles (default 1, at most 3), each wait at most
180 s; redis-server is started again whatever happens.

    scripts/lab up && .venv/bin/python tests/bench/observability.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from infra import Host, default_address  # noqa: E402
from infra.lab import group  # noqa: E402
from infra.lab import host as lab_host  # noqa: E402
from infra.observability import (  # noqa: E402
    ALERTMANAGER_PREFIX,
    PROMETHEUS_PREFIX,
    active_targets,
    alerts,
    get_json,
    wait_for,
)

TIMEOUT = 180.0
ALERT = "RedisDown"


def print_targets(mon: Host, prom: str) -> None:
    targets = active_targets(mon, prom)
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in targets:
        jobs.setdefault(target["labels"]["job"], []).append(target)
    up = sum(1 for t in targets if t["health"] == "up")
    print(f"scrape targets up: {up}/{len(targets)}")
    for job, members in sorted(jobs.items()):
        print(f"  {job:<18} {sum(1 for t in members if t['health'] == 'up')}/{len(members)}")
    for t in targets:
        if t["health"] != "up":
            print(f"  down: {t['labels']['job']} {t['labels']['instance']}: {t.get('lastError', '')}")


def settings(mon: Host, prom: str, am: str) -> str:
    """The settings the alert timings depend on, as the running services have them."""
    config = yaml.safe_load(get_json(mon, f"{prom}api/v1/status/config")["data"]["yaml"])
    rules = get_json(mon, f"{prom}api/v1/rules?type=alert")["data"]["groups"]
    durations = [r.get("duration", "?") for g in rules for r in g["rules"] if r["name"] == ALERT]
    route = yaml.safe_load(get_json(mon, f"{am}api/v2/status")["config"]["original"]).get("route", {})
    glob = config.get("global", {})
    return (
        f"{ALERT} for: {', '.join(f'{d} s' for d in durations) or 'no such rule'}, "
        f"scrape interval: {glob.get('scrape_interval', '?')}, evaluation interval: "
        f"{glob.get('evaluation_interval', '?')}, Alertmanager group_wait: {route.get('group_wait', '?')}"
    )


def seconds_until(mon: Host, am: str, active: bool, since: float) -> float:
    """Seconds from `since` (time.monotonic()) until ALERT is (active) or is no longer (not
    active) listed in Alertmanager; gives up TIMEOUT s after the polling started."""
    try:
        wait_for(lambda: bool(alerts(mon, am, ALERT)) == active, timeout=TIMEOUT)
    except TimeoutError:
        raise SystemExit(f"{ALERT} was not {'active' if active else 'resolved'} within {TIMEOUT:.0f} s") from None
    return time.monotonic() - since


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, choices=range(1, 4), help="stop/start cycles (1-3)")
    args = parser.parse_args()

    mon_name, redis_name = group("monitoring")[0], group("redis")[0]
    mon, redis = lab_host(mon_name), lab_host(redis_name)
    address = default_address(mon)
    prom = f"http://{address}:9090{PROMETHEUS_PREFIX}"
    am = f"http://{address}:9093{ALERTMANAGER_PREFIX}"
    print(f"lab: Prometheus and Alertmanager on {mon_name} ({address}), Redis on {redis_name}")

    print_targets(mon, prom)

    if alerts(mon, am, ALERT):
        raise SystemExit(f"{ALERT} is already active: start redis-server on {redis_name} first")
    fired: list[float] = []
    resolved: list[float] = []
    for _ in range(args.rounds):
        # Each clock starts just before its systemctl command (run over SSH).
        try:
            start = time.monotonic()
            redis.run_expect([0], "systemctl stop redis-server")
            fired.append(seconds_until(mon, am, True, start))
        finally:
            start = time.monotonic()
            redis.run_expect([0], "systemctl start redis-server")
        resolved.append(seconds_until(mon, am, False, start))
    print(settings(mon, prom, am))
    print(f"redis stopped -> {ALERT} active in Alertmanager: " + ", ".join(f"{s:.1f} s" for s in fired))
    print(f"redis started -> {ALERT} resolved in Alertmanager: " + ", ".join(f"{s:.1f} s" for s in resolved))


if __name__ == "__main__":
    main()
