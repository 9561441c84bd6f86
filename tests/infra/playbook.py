"""Run ansible-playbook from tests the way the checkout runs it, without side effects."""

from __future__ import annotations

import os
from pathlib import Path

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
