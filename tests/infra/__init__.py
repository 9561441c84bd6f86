"""Helpers shared by the Molecule scenarios' testinfra tests."""

from __future__ import annotations

import shlex
from typing import Any

Host = Any  # testinfra.host.Host (testinfra ships no type information)


def default_address(host: Host) -> str:
    """The address of the host's default route: what roles bind to by default."""
    out: str = host.check_output("ip -4 route get 192.0.2.1")
    fields = out.split()
    return fields[fields.index("src") + 1]


def http_get(host: Host, url: str, *args: str) -> Any:
    """Fetch a URL from the host itself with curl; returns the CommandResult."""
    extra = " ".join(shlex.quote(a) for a in args)
    return host.run(f"curl -sS --max-time 10 {extra} {shlex.quote(url)}")
