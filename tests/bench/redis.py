#!/usr/bin/env python3
"""Redis figures in one run on one throwaway Debian 12 container: converge and
idempotent re-run times of playbooks/redis.yml, and redis-benchmark SET/GET
ops/s with the role's configuration against Debian's stock configuration.
Prints them; asserts nothing.

Run as root from the checkout (the lab images and apt cache must exist):
    .venv/bin/python tests/bench/redis.py
It creates the container aiinfra-bench-redis (label aiinfra.lab=bench-redis)
and removes it at the end. Load goes to that container's loopback only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import statistics
import string
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTAINER = "aiinfra-bench-redis"
LABEL = "aiinfra.lab=bench-redis"
IMAGE = os.environ.get("LAB_IMAGE_PREFIX", "aiinfra-lab/debian") + ":12"
STATE_ROOT = os.environ.get("LAB_STATE_ROOT", "/var/lib/aiinfra-lab")
REQUESTS = 100_000
CLIENTS = 50
ROUNDS = 3
STOCK_PORT = 6390
ENV = {
    **os.environ,
    "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "ANSIBLE_CACHE_PLUGIN": "memory",
}
CAPS = [
    "AUDIT_CONTROL",
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_CHROOT",
    "SYS_NICE",
    "SYS_PTRACE",
]


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed:\n{res.stdout[-3000:]}{res.stderr[-2000:]}")
    out: subprocess.CompletedProcess[str] = res
    return out


def in_container(script: str) -> str:
    return run(["docker", "exec", CONTAINER, "sh", "-c", script]).stdout


def remove_container() -> None:
    """Remove the bench container, only if it is ours (carries the bench label)."""
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^{CONTAINER}$", "--filter", f"label={LABEL}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    for cid in found:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)


def start_container() -> None:
    cmd = ["docker", "run", "-d", "--name", CONTAINER, "--hostname", CONTAINER, "--label", LABEL]
    cmd += ["--cgroupns=host", "--security-opt", "seccomp=unconfined", "--stop-signal", "SIGRTMIN+3"]
    cmd += [arg for cap in CAPS for arg in ("--cap-add", cap)]
    cmd += [arg for path in ("/run", "/run/lock", "/tmp") for arg in ("--tmpfs", path)]
    cmd += ["-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    cmd += ["-v", f"{STATE_ROOT}/apt-proxy.conf:/etc/apt/apt.conf.d/01aiinfra-proxy:ro"]
    run([*cmd, IMAGE, "/lib/systemd/systemd"])
    # `--wait` blocks until boot is over (degraded is fine in a container), once
    # systemd answers at all: retry while it does not yet.
    for _ in range(60):
        state = subprocess.run(
            ["docker", "exec", CONTAINER, "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise SystemExit(f"{CONTAINER}: systemd did not finish booting ({state})")


def playbook(workdir: Path) -> tuple[float, str]:
    start = time.monotonic()
    res = run(
        [
            "ansible-playbook",
            "-i",
            str(workdir / "inventory.yml"),
            "-e",
            f"@{workdir / 'secrets.json'}",
            "playbooks/redis.yml",
        ]
    )
    elapsed = time.monotonic() - start
    recap = re.search(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)", res.stdout, re.MULTILINE)
    return elapsed, recap.group(1) if recap else "?"


def benchmark(port: int, auth: str) -> dict[str, float]:
    out = in_container(
        f"redis-benchmark -h 127.0.0.1 -p {port} {auth} -t set,get -n {REQUESTS} -c {CLIENTS} --csv 2>/dev/null"
    )
    rates: dict[str, float] = {}
    for line in out.splitlines():
        fields = [field.strip('"') for field in line.split(",")]
        if fields[0] in ("SET", "GET"):
            rates[fields[0]] = float(fields[1])
    return rates


def main() -> None:
    remove_container()
    alphabet = string.ascii_letters + string.digits
    passwords = {
        f"redis_{user}_password": "".join(secrets.choice(alphabet) for _ in range(32))
        for user in ("app", "exporter", "admin")
    }
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as tmp:
        workdir = Path(tmp)
        inventory = {
            "all": {
                "children": {
                    "redis": {
                        "hosts": {
                            CONTAINER: {
                                "ansible_connection": "community.docker.docker",
                                "ansible_host": CONTAINER,
                                "ansible_user": "root",
                                "ansible_become": False,
                                "ansible_python_interpreter": "/usr/bin/python3",
                                "redis_memory_mb": 2048,
                            }
                        }
                    }
                }
            }
        }
        (workdir / "inventory.yml").write_text(json.dumps(inventory))
        secrets_file = workdir / "secrets.json"
        secrets_file.touch(mode=0o600)
        secrets_file.write_text(json.dumps(passwords))
        try:
            start_container()
            converge, changed_first = playbook(workdir)
            rerun, changed_again = playbook(workdir)
            version = in_container("redis-server --version").split()[2].removeprefix("v=")

            # Debian's own redis.conf, straight from the package, on a second port.
            in_container(
                "set -e; mkdir -p /tmp/stock && cd /tmp/stock && apt-get download -q redis-server >/dev/null"
                " && dpkg-deb --fsys-tarfile redis-server_*.deb | tar -xO ./etc/redis/redis.conf > redis.conf"
                f" && redis-server /tmp/stock/redis.conf --port {STOCK_PORT} --dir /tmp/stock --daemonize yes"
                " --pidfile /tmp/stock/redis.pid --logfile /tmp/stock/redis.log"
                f" && for i in $(seq 100); do redis-cli -p {STOCK_PORT} ping | grep -q PONG && exit 0; sleep 0.1; done"
            )
            role_auth = f"--user app -a {passwords['redis_app_password']}"
            stock: dict[str, list[float]] = {"SET": [], "GET": []}
            role: dict[str, list[float]] = {"SET": [], "GET": []}
            for _ in range(ROUNDS):  # alternate, so load from neighbours hits both alike
                for test, rate in benchmark(STOCK_PORT, "").items():
                    stock[test].append(rate)
                for test, rate in benchmark(6379, role_auth).items():
                    role[test].append(rate)
        finally:
            remove_container()

    print(f"redis role on one Debian 12 container (Redis {version}), 2 shared cores")
    print(f"converge from a fresh container (install + configure): {converge:6.1f} s (changed={changed_first})")
    print(f"idempotent re-run:                                      {rerun:6.1f} s (changed={changed_again})")
    print(f"redis-benchmark -n {REQUESTS} -c {CLIENTS} over loopback, median of {ROUNDS} alternating rounds, ops/s:")
    print("         stock Debian   role (ACL app user, AOF everysec + RDB, maxmemory)   role/stock")
    for test in ("SET", "GET"):
        s, r = statistics.median(stock[test]), statistics.median(role[test])
        print(f"  {test}   {s:12.0f}   {r:12.0f}{'':42s}{r / s:6.2f}")


if __name__ == "__main__":
    main()
