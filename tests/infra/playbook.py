"""Run ansible-playbook from tests the way the checkout runs it, without side effects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def ansible_env(**overrides: str) -> dict[str, str]:
    """The environment for an ansible-playbook subprocess started by a test.

    Facts stay in memory: the checkout's jsonfile fact cache is keyed by host
    name, and a local-connection test host named like a lab host would leave
    the control node's facts (its Python path) for the lab's next run.
    """
    return dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_CACHE_PLUGIN="memory",
        **overrides,
    )


def collection_playbook(
    inventory: str | Path, name: str, *args: str, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run playbooks/<name> of the checkout against an inventory, as an operator would."""
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory)]
    return subprocess.run(
        [*command, str(REPO / "playbooks" / name), *args],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_playbook(
    tmp: Path, inventory: dict[str, Any], plays: list[dict[str, Any]], *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Write inventory and plays as YAML under tmp and run them with the checkout's ansible-playbook."""
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp / "hosts.yml"),
            str(tmp / "play.yml"),
            *args,
        ],
        cwd=REPO,
        env=ansible_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def recap_line(output: str, host: str) -> str:
    """The PLAY RECAP line of one host in ansible-playbook's output."""
    return next(line for line in output.splitlines() if line.startswith(f"{host} ") and "ok=" in line)


def failure_messages(output: str, host: str) -> str:
    """Every `fatal:`/`failed:` line of one host, whitespace collapsed, as one string."""
    return " ".join(
        " ".join(line.split())
        for line in output.splitlines()
        if line.startswith((f"fatal: [{host}]", f"failed: [{host}]"))
    )
