#!/usr/bin/env python3
"""Foundation figures: lab up from nothing and from cache, idle memory per host,
`molecule test -s redis` wall time (the base and redis roles on Debian 12 and 13).
Prints them; asserts nothing.

Run as root from the checkout after `scripts/lab up` has set up the control node:
    .venv/bin/python tests/bench/foundation.py
"From nothing" builds both base images under a throwaway tag (so images in use
stay untouched) with the apt cache warm, then removes them.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    res = subprocess.run(cmd, cwd=REPO, env=env or ENV, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}{res.stderr[-2000:]}")
    return time.monotonic() - start


def rss_mib(container: str) -> float:
    out = subprocess.run(["docker", "exec", container, "ps", "-eo", "rss="], check=True, capture_output=True, text=True)
    return sum(int(x) for x in out.stdout.split()) / 1024


def main() -> None:
    prefix = "aiinfra-bench/debian"
    build = timed(["scripts/images"], {**ENV, "LAB_IMAGE_PREFIX": prefix})
    subprocess.run(["docker", "rmi", f"{prefix}:12", f"{prefix}:13"], check=True, stdout=subprocess.DEVNULL)

    timed(["scripts/lab", "down"])
    create = timed([".venv/bin/ansible-playbook", "playbooks/lab.yml"])
    converge = timed([".venv/bin/ansible-playbook", "playbooks/site.yml"])
    time.sleep(10)  # let the hosts settle before reading idle memory
    # docker stats reads 0 B here (cgroup v1 with the host's cgroup namespace):
    # sum the resident memory of the host's processes instead (shared pages counted per process).
    names = subprocess.run(
        ["docker", "ps", "--filter", "label=aiinfra.lab=host", "--format", "{{.Names}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    lab = {name: rss_mib(name) for name in names}
    timed(["molecule", "destroy", "-s", "redis"])  # leftovers: `molecule test` starts with create
    molecule = timed(["molecule", "test", "-s", "redis"])

    print(f"base images built from nothing (debootstrap, apt cache warm): {build:6.1f} s")
    print(f"lab up from cached images ({len(lab)} hosts, containers + sudo user + ssh): {create:6.1f} s")
    print(f"site.yml first converge on the lab (base role):                {converge:6.1f} s")
    print(
        f"idle memory per lab host after converge: mean {sum(lab.values()) / len(lab):.1f} MiB, "
        f"max {max(lab.values()):.1f} MiB"
    )
    for name, mem in sorted(lab.items()):
        print(f"  {name:28s} {mem:6.1f} MiB")
    print(f"molecule test -s redis (base + redis, Debian 12 + 13):         {molecule:6.1f} s")


if __name__ == "__main__":
    main()
