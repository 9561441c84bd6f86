#!/usr/bin/env python3
"""Molecule under Ansible's stock strategy against Mitogen's, one scenario, one run; asserts nothing.

`molecule test -s <scenario>` runs once per strategy (stock first unless --mitogen-first); each
step's time is taken from when Molecule announces it ("[<scenario> > <step>] Executing") to the
next announcement or the end. Prints seconds per step and strategy, the ratio Mitogen/stock per
step and in all, and the control node's max RSS (the largest process of the run's tree). scripts/test
runs Molecule as the Mitogen column does (scripts/lib.sh use_mitogen; the docker connection and
the stock local one for localhost come from .config/molecule/config.yml).

Run as root from the checkout, when nothing else uses the scenario's containers:
    .venv/bin/python tests/bench/molecule.py                 # the redis scenario
    .venv/bin/python tests/bench/molecule.py -s postgresql
Full output of each run goes to .cache/bench/molecule/ (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.converge import LAB_ENV, REPO, STOCK_ENV

LOGS = REPO / ".cache" / "bench" / "molecule"
ANNOUNCE = re.compile(r"\[[\w-]+ > (?P<step>\w+)\] Executing$")


@dataclass
class Run:
    rc: int
    steps: list[tuple[str, float]]  # in order; destroy appears twice
    seconds: float
    maxrss_kib: int


def molecule_test(scenario: str, label: str, env: dict[str, str], timeout: float) -> Run:
    """One `molecule test`, its output stamped line by line as it arrives. After timeout seconds
    its whole process group is killed, even when it prints nothing (a hung step)."""
    log = LOGS / f"{scenario}-{label}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    marks: list[tuple[str, float]] = []
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["molecule", "test", "-s", scenario],
            cwd=REPO,
            env={**env, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        watchdog = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        watchdog.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            match = ANNOUNCE.search(line.rstrip())
            if match:
                marks.append((match["step"], time.monotonic()))
                print(f"  {label:7} {match['step']:12} starts at {marks[-1][1] - start:7.1f} s", flush=True)
        _, status, usage = os.wait4(proc.pid, 0)
        watchdog.cancel()
    end = time.monotonic()
    edges = [*marks, ("end", end)]
    steps = [(step, edges[i + 1][1] - at) for i, (step, at) in enumerate(marks)]
    return Run(os.waitstatus_to_exitcode(status), steps, end - start, usage.ru_maxrss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-s", "--scenario", default="redis")
    parser.add_argument("--mitogen-first", action="store_true", help="run the Mitogen sequence first")
    parser.add_argument("--timeout", type=float, default=5400, help="seconds per molecule test")
    args = parser.parse_args()
    if "ANSIBLE_STRATEGY" not in LAB_ENV:
        raise SystemExit("LAB_MITOGEN=0 is set: there is no Mitogen run to compare")

    order = [("stock", STOCK_ENV), ("mitogen", LAB_ENV)]
    if args.mitogen_first:
        order.reverse()
    print(f"scenario {args.scenario}: molecule test, {order[0][0]} first")
    runs: dict[str, Run] = {}
    for label, env in order:
        runs[label] = molecule_test(args.scenario, label, env, args.timeout)
        if runs[label].rc != 0:
            raise SystemExit(f"{label}: molecule test failed (rc {runs[label].rc}): {LOGS}/{args.scenario}-{label}.log")

    stock, mitogen = runs["stock"], runs["mitogen"]
    print(f"\n{'step':12} {'stock s':>9} {'mitogen s':>10} {'ratio':>6}")
    for (step, a), (_, b) in zip(stock.steps, mitogen.steps, strict=True):
        print(f"{step:12} {a:9.1f} {b:10.1f} {b / a if a else float('nan'):6.2f}")
    print(f"{'all':12} {stock.seconds:9.1f} {mitogen.seconds:10.1f} {mitogen.seconds / stock.seconds:6.2f}")
    print(
        "control node max RSS (largest process of the run): "
        f"stock {stock.maxrss_kib / 1024:.0f} MiB, mitogen {mitogen.maxrss_kib / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
