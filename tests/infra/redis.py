"""Helpers for the redis scenario and the lab: their secrets and redis-cli on the host."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from infra import Host

REPO = Path(__file__).resolve().parents[2]
ADMIN = "admin"
APP = "app"
EXPORTER = "exporter"


def secret(name: str) -> str:
    """A password the scenario (or, outside Molecule, the lab) generated with the password lookup."""
    path = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", REPO / ".lab")) / "secrets" / name
    return path.read_text().split()[0]


def password(user: str) -> str:
    return secret(f"redis_{user}")


def redis_cli(
    host: Host,
    *command: str,
    user: str | None = None,
    pw: str | None = None,
    address: str = "127.0.0.1",
    port: int = 6379,
    tls_ca: str | None = None,
) -> Any:
    """Run one Redis command with redis-cli on the host; returns the CommandResult.

    The password travels in REDISCLI_AUTH, as an operator would pass it, not as an argument.
    """
    env = f"REDISCLI_AUTH={shlex.quote(pw)} " if pw is not None else ""
    auth = f"--user {shlex.quote(user)} " if user is not None else ""
    tls = f"--tls --cacert {shlex.quote(tls_ca)} " if tls_ca else ""
    args = " ".join(shlex.quote(part) for part in command)
    return host.run(f"{env}timeout 20 redis-cli --no-auth-warning {tls}-h {address} -p {port} {auth}{args}")


def as_user(host: Host, user: str, *command: str, **kwargs: Any) -> str:
    """Output of a command run as one of the role's ACL users (stripped)."""
    res = redis_cli(host, *command, user=user, pw=password(user), **kwargs)
    out: str = (res.stdout + res.stderr).strip()
    return out
