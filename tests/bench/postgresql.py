#!/usr/bin/env python3
"""Benchmark of the postgresql role, printed in one run on one throwaway container.

Prints: the role's first converge and idempotent re-run times, then pgbench TPS
(scale 20, 8 clients, 20 s, over the unix socket) on the same host with three
configurations: the role's; the role's with the PGTune keys back at
PostgreSQL's built-in values (the effect of the tuning alone); and Debian's
stock one (the role's file removed). They alternate for a number of rounds (a
noisy machine then weighs on all alike); the medians and their ratios follow.

Only touches its own container (label aiinfra.lab=bench), removed at the end.
Usage: .venv/bin/python tests/bench/postgresql.py [--image aiinfra-lab/debian:12] [--memory-mb 4096] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
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
SCALE, CLIENTS, SECONDS = 20, 8, 20
SHOWN = "'shared_buffers', 'effective_cache_size', 'work_mem', 'max_wal_size', 'random_page_cost'"


def sh(*cmd: str, check: bool = True, timeout: int = 1800) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout


def start_container(name: str, image: str) -> None:
    state_root = os.environ.get("LAB_STATE_ROOT", "/var/lib/aiinfra-lab")
    args = ["docker", "run", "-d", "--name", name, "--hostname", name, "--label", "aiinfra.lab=bench"]
    args += ["--cgroupns=host", "--security-opt", "seccomp=unconfined", "--stop-signal", "SIGRTMIN+3"]
    args += [f"--cap-add={cap}" for cap in CAPS]
    for path in ("/run", "/run/lock", "/tmp"):
        args += ["--tmpfs", path]
    args += ["-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    if Path(state_root, "apt-proxy.conf").exists():
        args += ["-v", f"{state_root}/apt-proxy.conf:/etc/apt/apt.conf.d/01aiinfra-proxy:ro"]
    sh(*args, image, "/lib/systemd/systemd")
    sh("docker", "exec", name, "systemctl", "is-system-running", "--wait", check=False, timeout=120)


def converge(workdir: Path) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN="memory")
    started = time.monotonic()
    res = subprocess.run(
        [
            f"{Path(sys.executable).parent}/ansible-playbook",
            "-i",
            str(workdir / "hosts.yml"),
            str(workdir / "play.yml"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    elapsed = time.monotonic() - started
    if res.returncode != 0:
        raise SystemExit(f"converge failed:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}")
    recap = [line for line in res.stdout.splitlines() if "changed=" in line]
    return elapsed, recap[-1] if recap else ""


def pg(name: str, *cmd: str, timeout: int = 600) -> str:
    return sh("docker", "exec", name, "runuser", "-u", "postgres", "--", *cmd, timeout=timeout)


def pgbench_tps(name: str) -> float:
    pg(name, "dropdb", "--if-exists", "bench")
    pg(name, "createdb", "bench")
    pg(name, "pgbench", "-i", "-q", "-s", str(SCALE), "bench")
    pg(name, "psql", "-X", "-q", "-d", "bench", "-c", "CHECKPOINT")
    out = pg(name, "pgbench", "-n", "-c", str(CLIENTS), "-j", "2", "-T", str(SECONDS), "bench", timeout=SECONDS + 300)
    match = re.search(
        r"tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)", out
    )
    if not match:
        raise SystemExit(f"no TPS in pgbench output:\n{out}")
    return float(match.group(1))


def shown_settings(name: str) -> str:
    query = f"SELECT string_agg(name || '=' || current_setting(name), ' ') FROM pg_settings WHERE name IN ({SHOWN})"
    return pg(name, "psql", "-X", "-A", "-t", "-c", query).strip()


def restart_and_wait(name: str, unit: str) -> None:
    sh("docker", "exec", name, "systemctl", "restart", unit)
    sh("docker", "exec", name, "sh", "-c", "for i in $(seq 120); do pg_isready -q && exit 0; sleep 0.5; done; exit 1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--image", default="aiinfra-lab/debian:12")
    parser.add_argument("--memory-mb", type=int, default=4096, help="postgresql_memory_mb to tune for")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three configurations")
    args = parser.parse_args()
    name = f"aiinfra-pgbench-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="pgbench-") as tmp:
        workdir = Path(tmp)
        password = secrets.token_urlsafe(24)
        host_vars = {
            "ansible_connection": "community.docker.docker",
            "ansible_host": name,
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        group_vars = {
            "platform_admin_networks": ["172.17.0.0/16"],
            "internal_ca_dir": str(workdir / "ca"),
            "postgresql_memory_mb": args.memory_mb,
            "postgresql_admin_password": password,
            "postgresql_exporter_password": password[::-1],
        }
        inventory = {"all": {"children": {"postgres": {"hosts": {name: host_vars}, "vars": group_vars}}}}
        (workdir / "hosts.yml").write_text(yaml.safe_dump(inventory))
        (workdir / "play.yml").write_text(
            yaml.safe_dump([{"ansible.builtin.import_playbook": str(REPO / "playbooks" / "postgresql.yml")}])
        )
        start_container(name, args.image)
        try:
            first, _ = converge(workdir)
            second, recap = converge(workdir)
            version = pg(name, "psql", "-X", "-A", "-t", "-c", "SHOW server_version_num").strip()[:2]
            unit = f"postgresql@{version}-main"
            conf = f"/etc/postgresql/{version}/main/conf.d/50-aiinfra.conf"
            parked = "/root/50-aiinfra.conf.off"
            # The keys the role's PGTune filter sets; "untuned" puts each back to
            # PostgreSQL's built-in value (ALTER SYSTEM) and keeps the rest.
            sys.path.insert(0, str(REPO / "plugins" / "filter"))
            from pgtune import pgtune  # type: ignore[import-not-found]

            tuned_keys = sorted(pgtune(args.memory_mb, 2))
            psql = ("psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c")

            def switch(kind: str) -> None:
                """Put the server in one of the three configurations and restart it."""
                sh("docker", "exec", name, "sh", "-c", f"[ -e {conf} ] || mv {parked} {conf}")
                pg(name, *psql, "ALTER SYSTEM RESET ALL")
                if kind == "untuned":
                    boot = pg(
                        name,
                        *psql,
                        "SELECT string_agg(format('ALTER SYSTEM SET %I = %L;', name, boot_val), ' ') "
                        f"FROM pg_settings WHERE name IN ({', '.join(repr(k) for k in tuned_keys)})",
                    )
                    for statement in boot.strip().split(";"):
                        if statement.strip():
                            pg(name, *psql, statement)
                if kind == "stock":
                    sh("docker", "exec", name, "mv", conf, parked)
                restart_and_wait(name, unit)

            kinds = ("tuned", "untuned", "stock")
            tps: dict[str, list[float]] = {kind: [] for kind in kinds}
            shown: dict[str, str] = {}
            for _ in range(args.rounds):
                for kind in kinds:
                    switch(kind)
                    shown[kind] = shown_settings(name)
                    tps[kind].append(pgbench_tps(name))
        finally:
            sh("docker", "rm", "-f", name, check=False)
    print(f"image {args.image}, PostgreSQL {version}, tuned for postgresql_memory_mb={args.memory_mb}")
    print(f"converge (first run):        {first:7.1f} s")
    print(f"converge (idempotent re-run): {second:7.1f} s   [{recap.strip()}]")
    print(f"pgbench scale {SCALE}, {CLIENTS} clients, {SECONDS} s (unix socket), {args.rounds} alternating rounds:")
    labels = {
        "tuned": "the role's configuration      ",
        "untuned": "the role's, PGTune keys reset ",
        "stock": "Debian's stock configuration  ",
    }
    median = {kind: statistics.median(runs) for kind, runs in tps.items()}
    for kind, label in labels.items():
        runs = " ".join(f"{t:.0f}" for t in tps[kind])
        print(f"  {label} median {median[kind]:8.1f} tps  runs [{runs}]  ({shown[kind]})")
    print(f"  ratio tuning (role / PGTune keys reset): {median['tuned'] / median['untuned']:.2f}")
    print(f"  ratio whole configuration (role / Debian stock): {median['tuned'] / median['stock']:.2f}")
    print("  (the role adds wal_log_hints, wal_compression, pg_stat_statements, track_io_timing and logging)")


if __name__ == "__main__":
    main()
