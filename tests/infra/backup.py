"""Helpers for the backup checks: run the backup and restore playbooks (against Molecule's
inventory by default, or the lab's) and read their JSON reports."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import testinfra

from infra import Host
from infra.playbook import collection_playbook
from infra.postgresql import psql_local


def inventory() -> str:
    return os.environ["MOLECULE_INVENTORY_FILE"]


def get_host(name: str) -> Host:
    """A testinfra host of the running scenario by inventory name."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory())


def playbook(
    name: str, *extra: str, inventory_path: str | None = None, timeout: int = 1200
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run playbooks/<name> (Molecule's inventory unless given); returns the process and its JSON report (or {})."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        kind = "backup" if name == "backup.yml" else "restore"
        proc = collection_playbook(
            inventory_path or inventory(), name, "-e", f"{kind}_report_file={report}", *extra, timeout=timeout
        )
        data: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {}
    return proc, data


def extra_json(**variables: Any) -> tuple[str, str]:
    """-e arguments carrying variables as JSON (types survive: lists, booleans, empty strings)."""
    return "-e", json.dumps(variables)


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> None:
    """Poll check() until it is true; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_archived(host: Host, timeout: float = 300) -> None:
    """Switch to a new WAL segment and wait until pgBackRest has the one just closed."""
    segment = psql_local(host, "SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(
        lambda: psql_local(host, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment,
        timeout,
        f"WAL segment {segment} archived",
    )


def why(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed playbook run said: its fatal/failed lines (any host), else the end of its output."""
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("fatal: [", "failed: [", "[ERROR]"))]
    return "\n".join(lines)[-4000:] or proc.stdout[-3000:]
