#!/usr/bin/env python3
"""Firewall figures against the `firewall` Molecule scenario's own containers.

Prints: pairs verified open / closed, time to probe the whole matrix (best and
median of a few runs), first converge and idempotent re-run times. Touches
only the scenario's containers (172.29.20.0/24) and this machine.

    tests/bench/firewall.py            # fresh: destroy, create, prepare, converge, idempotence, matrix, destroy
    tests/bench/firewall.py --reuse    # containers already converged: idempotence and matrix only, keep them
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.firewall import (
    check_matrix,
    docker_runner,
    expected_open,
    load_flows,
    load_scenario,
    probe_ports,
    run_matrix,
)

REPO = Path(__file__).resolve().parents[2]
MATRIX_RUNS = 3


def molecule(action: str) -> float:
    """Run one molecule action on the scenario; return its wall time in seconds."""
    start = time.monotonic()
    res = subprocess.run(
        [str(Path(sys.executable).parent / "molecule"), action, "-s", "firewall"],
        cwd=REPO,
        env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", PY_COLORS="0"),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if res.returncode != 0:
        sys.exit(f"molecule {action} failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="use the scenario's running containers and keep them")
    args = parser.parse_args()

    times: dict[str, float] = {}
    if not args.reuse:
        molecule("destroy")
        times["create + prepare"] = molecule("create") + molecule("prepare")
        times["converge (first)"] = molecule("converge")
    times["idempotence (re-run, changed=0)"] = molecule("idempotence")

    scenario, flows = load_scenario(), load_flows()
    ports = probe_ports(flows)
    expected = expected_open(flows, scenario)
    seconds: list[float] = []
    for _ in range(MATRIX_RUNS):
        matrix = run_matrix(scenario, ports, docker_runner)
        result = check_matrix(matrix, expected)
        if result.errors:
            sys.exit("matrix does not match the flow list:\n" + "\n".join(result.errors))
        seconds.append(matrix.seconds)

    if not args.reuse:
        molecule("destroy")

    hosts = len(scenario.hosts)
    print(f"firewall scenario: {hosts} hosts + the control node, {len(ports)} ports (tcp/udp) each")
    print(
        f"pairs verified open / closed: {result.verified_open} / {result.verified_closed}"
        f"  (+{result.controls_open} loopback controls; {len(matrix.verdicts)} probes per run)"
    )
    print(
        f"matrix time: best {min(seconds):.2f} s, median {statistics.median(seconds):.2f} s over {MATRIX_RUNS} runs"
        f"  ({len(matrix.verdicts) / min(seconds):.0f} probes/s)"
    )
    for name, value in times.items():
        print(f"{name}: {value:.1f} s")
    if "converge (first)" in times:
        ratio = times["idempotence (re-run, changed=0)"] / times["converge (first)"]
        print(f"idempotent re-run / first converge: {ratio:.2f}")


if __name__ == "__main__":
    main()
