"""Helpers for the postgresql scenario: passwords from Molecule's secrets, psql over TCP."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import testinfra

from infra import Host, default_address

PORT = 5432


def secret(name: str) -> str:
    """A password the scenario generated with the password lookup (stable across runs)."""
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets" / name
    return path.read_text().split(" salt=")[0].strip()


def group_hosts(group: str) -> list[Host]:
    """testinfra hosts of an inventory group of the running scenario."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    hosts: list[Host] = testinfra.get_hosts([f"ansible://{group}"], ansible_inventory=inventory)
    return hosts


def service_address(host: Host) -> str:
    return default_address(host)


def psql(
    host: Host,
    sql: str,
    *,
    user: str,
    password: str,
    address: str = "127.0.0.1",
    dbname: str = "app",
    sslmode: str = "prefer",
    sslrootcert: str | None = None,
) -> Any:
    """Run one SQL string with psql over TCP from `host`; returns the CommandResult (stdout unaligned)."""
    conninfo = f"host={address} port={PORT} dbname={dbname} user={user} sslmode={sslmode} connect_timeout=5"
    if sslrootcert:
        conninfo += f" sslrootcert={sslrootcert}"
    return host.run(
        f"PGPASSWORD={shlex.quote(password)} psql -X -A -t -q -v ON_ERROR_STOP=1 "
        f"{shlex.quote(conninfo)} -c {shlex.quote(sql)}"
    )


def psql_local(host: Host, sql: str, dbname: str = "postgres") -> str:
    """SQL as the postgres superuser over the unix socket (peer); returns stdout, fails on error."""
    out: str = host.check_output(
        f"runuser -u postgres -- psql -X -A -t -q -v ON_ERROR_STOP=1 -d {dbname} -c {shlex.quote(sql)}"
    )
    return out.strip()
