#!/usr/bin/env python3
"""Molecule under Ansible's stock strategy against Mitogen's, one scenario, one run; asserts nothing.

For each strategy in turn (stock first unless --mitogen-first), the scenario's test sequence is
run one `molecule <step> -s <scenario>` at a time, each timed: destroy, create, prepare, converge,
check, idempotence, verify, destroy. Prints a table of seconds per step and strategy, the ratio
Mitogen/stock per step and in all, and the control node's max RSS per strategy. scripts/test
runs Molecule as the Mitogen column does (scripts/lib.sh use_mitogen; the docker connection and
the stock local one for localhost come from .config/molecule/config.yml).

Run as root from the checkout, when nothing else uses the scenario's containers:
    .venv/bin/python tests/bench/molecule.py                 # the redis scenario
    .venv/bin/python tests/bench/molecule.py -s postgresql
Full output of every step goes to .cache/bench/molecule/ (git-ignored).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.converge import LAB_ENV, REPO, STOCK_ENV, Result, run

LOGS = REPO / ".cache" / "bench" / "molecule"
STEPS = ["destroy", "create", "prepare", "converge", "check", "idempotence", "verify", "destroy"]


def sequence(scenario: str, label: str, env: dict[str, str], timeout: float) -> list[Result]:
    """The scenario's steps one by one; stops (after a destroy) at the first that fails."""
    results: list[Result] = []
    for index, step in enumerate(STEPS):
        log = LOGS / f"{scenario}-{label}-{index}-{step}.log"
        res = run(["molecule", step, "-s", scenario], timeout, env=env, log=log)
        results.append(res)
        print(f"  {label:7} {step:12} {res.seconds:7.1f} s  rc {res.rc}", flush=True)
        if res.rc != 0:
            run(["molecule", "destroy", "-s", scenario], timeout, env=env)
            raise SystemExit(f"{label}: molecule {step} failed (rc {res.rc}); its output: {log}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-s", "--scenario", default="redis")
    parser.add_argument("--mitogen-first", action="store_true", help="run the Mitogen sequence first")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per step")
    args = parser.parse_args()
    if "ANSIBLE_STRATEGY" not in LAB_ENV:
        raise SystemExit("LAB_MITOGEN=0 is set: there is no Mitogen run to compare")

    order = [("mitogen", LAB_ENV), ("stock", STOCK_ENV)]
    if not args.mitogen_first:
        order.reverse()
    print(f"scenario {args.scenario}: steps one at a time, {order[0][0]} first")
    runs = {label: sequence(args.scenario, label, env, args.timeout) for label, env in order}

    stock, mitogen = runs["stock"], runs["mitogen"]
    print(f"\n{'step':12} {'stock s':>9} {'mitogen s':>10} {'ratio':>6}")
    for index, step in enumerate(STEPS):
        a, b = stock[index].seconds, mitogen[index].seconds
        print(f"{step:12} {a:9.1f} {b:10.1f} {b / a:6.2f}")
    total_a = sum(r.seconds for r in stock)
    total_b = sum(r.seconds for r in mitogen)
    print(f"{'all':12} {total_a:9.1f} {total_b:10.1f} {total_b / total_a:6.2f}")
    print(
        "control node max RSS of one step's process tree: "
        f"stock {max(r.maxrss_kib for r in stock) / 1024:.0f} MiB, "
        f"mitogen {max(r.maxrss_kib for r in mitogen) / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
