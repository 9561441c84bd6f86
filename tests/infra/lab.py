"""The lab as the platform scenario's tests see it: hosts, addresses and groups from the
inventory (as Ansible resolves it), SSH to each host like Ansible does, and HTTPS
through nginx verified against the lab's internal CA."""

from __future__ import annotations

import functools
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import testinfra

from infra import Host
from infra.playbook import REPO, ansible_env, collection_playbook

LAB = REPO / ".lab"
# LAB_INVENTORY=inventories/single runs the checks that apply against the one-host shape.
INVENTORY_DIR = REPO / os.environ.get("LAB_INVENTORY", "inventories/lab")
SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"


@functools.cache
def inventory() -> dict[str, Any]:
    """`ansible-inventory --list` of the lab: nested groups resolved, host variables per host."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(INVENTORY_DIR), "--list"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ansible_env(),
    ).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def hostvars() -> dict[str, dict[str, Any]]:
    return dict(inventory()["_meta"]["hostvars"])


def group(name: str) -> list[str]:
    """The hosts of a group, its child groups' hosts included, in inventory order."""
    data = inventory()
    hosts = list(data.get(name, {}).get("hosts", []))
    for child in data.get(name, {}).get("children", []):
        hosts += [h for h in group(child) if h not in hosts]
    return hosts


def address(host: str) -> str:
    return str(hostvars()[host]["ansible_host"])


def secret(name: str) -> str:
    """A secret the lab generated on the control node (.lab/secrets/<name>)."""
    return (LAB / "secrets" / name).read_text().split()[0]


def ca_file() -> Path:
    return LAB / "ca" / "ca.crt"


@functools.cache
def host(name: str) -> Host:
    """testinfra over SSH as the lab's sudo user, with sudo: the way Ansible reaches it."""
    return testinfra.get_host(
        f"ssh://aiinfra@{address(name)}",
        ssh_identity_file=str(LAB / "ssh" / "id_ed25519"),
        ssh_extra_args=SSH_OPTIONS,
        sudo=True,
    )


def proxy_base() -> str:
    return f"https://{address(group('proxy')[0])}"


@functools.cache
def _tls_context(cafile: str) -> ssl.SSLContext:
    """One context per CA file, shared by every request and thread (the load generator's CPU)."""
    return ssl.create_default_context(cafile=cafile)


def https(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> tuple[int, dict[str, str], bytes]:
    """One request verified against the lab's CA; returns status, headers (lower-case names), raw body."""
    ctx = _tls_context(str(ca_file()))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def playbook(name: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run one of the collection's playbooks against the lab, as an operator would."""
    return collection_playbook(INVENTORY_DIR, name, *args, timeout=timeout)
