#!/usr/bin/env python3
"""Benchmark of backups and restores, printed in one run on the backup scenario's containers.

Needs a converged scenario (`molecule converge -s backup`; the verify step may
have run). Prints, for a pgbench scale-50 database: a full backup through
playbooks/backup.yml against the same `pgbackrest backup` run by hand on the
backup host, and a restore of the latest state onto backup-spare through
playbooks/restore.yml against the same `pgbackrest restore` plus server start
run by hand (ratios: playbook / by hand); then RPO and RTO: under a steady
insert load (each commit logged by the client) PostgreSQL on backup-data is
killed with SIGKILL, the latest state is restored onto backup-spare through the
playbook, RPO = crash time - newest restored commit, RTO = restore start to the
app user connected. backup-data's server is started again afterwards (crash
recovery from its own WAL).

Only touches the scenario's containers (backup-data, backup-repo, backup-spare).
Usage: .venv/bin/python tests/bench/backup.py [--scale 50] [--load-seconds 45]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
DATA_DIR = "/var/lib/postgresql/15/main"
UNIT = "postgresql@15-main"


def ephemeral_dir() -> Path:
    """Molecule's ephemeral directory of the backup scenario (inventory, secrets)."""
    if "MOLECULE_EPHEMERAL_DIRECTORY" in os.environ:
        return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    found = sorted(glob.glob(os.path.expanduser("~/.ansible/tmp/molecule.*.backup")), key=os.path.getmtime)
    if not found:
        raise SystemExit("no converged backup scenario: run `molecule converge -s backup` first")
    return Path(found[-1])


EPHEMERAL = ephemeral_dir()
ENV = dict(
    os.environ,
    ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
    ANSIBLE_CACHE_PLUGIN="memory",
    ANSIBLE_FORCE_COLOR="0",
    MOLECULE_EPHEMERAL_DIRECTORY=str(EPHEMERAL),
)


def sh(container: str, script: str, check: bool = True) -> str:
    res = subprocess.run(["docker", "exec", container, "bash", "-c", script], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise SystemExit(f"{container}: {script[:120]} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return res.stdout.strip()


def timed_sh(container: str, script: str) -> float:
    start = time.monotonic()
    sh(container, script)
    return time.monotonic() - start


def playbook(name: str, variables: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        key = "backup_report_file" if name == "backup.yml" else "restore_report_file"
        cmd = [PLAYBOOK, "-i", str(EPHEMERAL / "inventory" / "ansible_inventory.yml"), f"playbooks/{name}"]
        cmd += ["-e", json.dumps({**variables, key: str(report)})]
        start = time.monotonic()
        res = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, check=False, timeout=3600)
        elapsed = time.monotonic() - start
        if res.returncode != 0:
            raise SystemExit(f"{name} failed:\n{res.stdout[-4000:]}")
        return elapsed, json.loads(report.read_text())


def wait(container: str, script: str, expect: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sh(container, script, check=False) != expect:
        if time.monotonic() > deadline:
            raise SystemExit(f"{container}: timed out waiting for {script!r} == {expect!r}")
        time.sleep(1)


def psql(container: str, sql: str, db: str = "postgres") -> str:
    return sh(container, f'runuser -u postgres -- psql -XAtq -d {db} -c "{sql}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=45.0)
    args = parser.parse_args()

    # The primary must be up (a previous verify restored it in place).
    wait("backup-data", "pg_isready -q && echo up", "up", 120)
    sh("backup-data", "runuser -u postgres -- dropdb --if-exists bench && runuser -u postgres -- createdb bench")
    init_s = timed_sh("backup-data", f"runuser -u postgres -- pgbench -i -q -s {args.scale} bench 2>&1")
    size = psql("backup-data", "SELECT pg_size_pretty(pg_database_size('bench'))")

    # Full backups: the playbook (systemctl start of the timers' service) vs by hand.
    pb_backup_s, _ = playbook("backup.yml", {"backup_type": "full"})
    hand_backup_s = timed_sh(
        "backup-repo", "runuser -u pgbackrest -- pgbackrest --stanza=main --type=full --log-level-console=warn backup"
    )

    # RPO/RTO: steady inserts, each commit logged by the client, then SIGKILL.
    sh("backup-data", "rm -f /root/bench-committed.log")
    psql(
        "backup-data",
        "CREATE TABLE IF NOT EXISTS bench_load (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
        "bench",
    )
    loop = (
        "for i in $(seq 1 20000); do runuser -u postgres -- psql -XAtq -d bench -c "
        "'INSERT INTO bench_load DEFAULT VALUES RETURNING id, extract(epoch FROM at)' "
        ">> /root/bench-committed.log || break; done"
    )
    sh(
        "backup-data",
        f"systemd-run --unit=bench-load --collect timeout {int(args.load_seconds) + 60} bash -c {shlex.quote(loop)}",
    )
    time.sleep(args.load_seconds)  # the load itself is what is measured: it must run this long
    crashed_at = float(sh("backup-data", f"date +%s.%N; systemctl kill --signal=KILL {UNIT}").splitlines()[0])
    wait("backup-data", "systemctl is-active bench-load", "inactive", 60)
    pb_restore_s, report = playbook(
        "restore.yml",
        {
            "restore_host": "backup-spare",
            "restore_confirm": True,
            "restore_database": "bench",
            "restore_verify_tables": ["pgbench_branches"],
        },
    )
    committed = dict(
        (int(i), float(at))
        for i, at in (line.split("|") for line in sh("backup-data", "cat /root/bench-committed.log").split())
    )
    restored_max = max(
        (
            committed[int(i)]
            for i in psql("backup-spare", "SELECT string_agg(id::text, ' ') FROM bench_load", "bench").split()
            if int(i) in committed
        ),
        default=float("nan"),
    )
    rpo_s = crashed_at - restored_max
    sh("backup-data", f"systemctl start {UNIT}")
    wait("backup-data", "pg_isready -q && echo up", "up", 300)

    # The same restore by hand on backup-spare: stop, empty, restore, start, wait for read-write.
    hand_restore_s = timed_sh(
        "backup-spare",
        f"systemctl stop {UNIT} && rm -rf {DATA_DIR} && install -d -o postgres -g postgres -m 0700 {DATA_DIR} && "
        "runuser -u postgres -- pgbackrest --stanza=main --archive-mode=off --log-level-console=warn restore && "
        f"systemctl start {UNIT} && "
        "until [ \"$(runuser -u postgres -- psql -XAtq -c 'SELECT pg_is_in_recovery()' 2>/dev/null)\" = f ]; "
        "do sleep 0.5; done",
    )
    sh("backup-data", "runuser -u postgres -- dropdb bench")

    print(f"pgbench scale {args.scale}: database {size}, pgbench -i {init_s:.1f} s")
    print(
        f"full backup    playbook {pb_backup_s:7.1f} s   by hand {hand_backup_s:7.1f} s   "
        f"ratio {pb_backup_s / hand_backup_s:.2f}"
    )
    print(
        f"restore latest playbook {pb_restore_s:7.1f} s   by hand {hand_restore_s:7.1f} s   "
        f"ratio {pb_restore_s / hand_restore_s:.2f}"
    )
    print(f"RPO {rpo_s:.1f} s ({len(committed)} rows committed under load, crash by SIGKILL, archive_timeout 15 s)")
    print(f"RTO {float(report['rto_seconds']):.1f} s (restore start to app user connected, new host)")


if __name__ == "__main__":
    main()
