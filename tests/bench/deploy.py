#!/usr/bin/env python3
"""Rolling deploy bench on the lab: prints figures, asserts nothing about timing.

Against the lab only (inventories/lab; every request goes to its proxy):
1. steady state: the load generator of the lab checks (reads and writes through
   nginx, 4 threads) for --steady seconds with no deploy;
2. a deploy of a new release (playbooks/deploy.yml, one host at a time) under the
   same load, then a rollback (playbooks/rollback.yml) under load.
For each: requests sent and failed, p99 latency and its ratio to steady state,
and seconds per app host. Leaves the lab on the release it found.

    scripts/lab up && .venv/bin/python tests/bench/deploy.py [--steady 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from infra.lab import playbook, secret  # noqa: E402
from infra.release import APP_HOSTS, Load, build_wheel, versions  # noqa: E402


def run(label: str, api_key: str, book: str, *args: str) -> tuple[str, Load, float]:
    with Load(api_key).running() as load:
        start = time.monotonic()
        res = playbook(book, *args)
        seconds = time.monotonic() - start
    if res.returncode != 0:
        raise SystemExit(f"{label} failed:\n{res.stdout[-3000:]}{res.stderr[-1000:]}")
    return label, load, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steady", type=int, default=60, help="seconds of steady-state load (max 600)")
    args = parser.parse_args()
    steady_seconds = max(10, min(args.steady, 600))
    api_key = secret("app_api_key")
    before = versions()
    if len(set(before.values())) != 1:
        raise SystemExit(f"the app hosts serve different releases: {before}")

    with Load(api_key).running() as steady:
        time.sleep(steady_seconds)
    wheel = build_wheel("0.9.1")
    rows = [
        run("deploy.yml (new release)", api_key, "deploy.yml", "-e", f"app_wheel={wheel}"),
        run("rollback.yml", api_key, "rollback.yml"),
    ]
    after = versions()

    hosts = len(APP_HOSTS)
    print(
        f"rolling deploy on the lab: {hosts} app hosts, one at a time, load of 4 threads through nginx"
        f" ({steady.pause} s between a thread's requests)"
    )
    print(f"steady state {steady_seconds} s: {sum(steady.results.values())} requests, p99 {steady.p99() * 1000:.1f} ms")
    print(f"{'run':<26}{'sent':>7}{'failed':>8}{'p99 ms':>9}{'p99 ratio':>11}{'s total':>9}{'s/host':>8}")
    for label, load, seconds in rows:
        print(
            f"{label:<26}{sum(load.results.values()):>7}{load.results['failed']:>8}{load.p99() * 1000:>9.1f}"
            f"{load.p99() / steady.p99():>11.2f}{seconds:>9.1f}{seconds / hosts:>8.1f}"
        )
    print(f"versions before {before}, after {after}")


if __name__ == "__main__":
    main()
