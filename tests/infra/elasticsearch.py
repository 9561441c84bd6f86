"""Helpers for the elasticsearch scenario: its secrets and the REST API called with curl on the host."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import Host

REPO = Path(__file__).resolve().parents[2]
CA = "/usr/local/share/aiinfra/elasticsearch-ca.crt"
LOCAL = "https://127.0.0.1:9200"
# user name -> secret file written by the scenario's password lookups
USERS = {"aiinfra_admin": "es_admin", "elastic": "es_elastic", "app": "es_app", "monitoring": "es_monitoring"}


def password(user: str) -> str:
    """A password the scenario generated with the password lookup."""
    path = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", REPO / ".lab")) / "secrets" / USERS[user]
    return path.read_text().split()[0]


@dataclass
class Answer:
    status: int  # HTTP status, 0 when no HTTP answer came (refused, TLS failure)
    body: Any  # parsed JSON, or the raw text
    stderr: str


def api(
    host: Host,
    method: str,
    path: str,
    user: str | None = "aiinfra_admin",
    body: Any = None,
    *,
    pw: str | None = None,
    base: str = LOCAL,
    ca: str | None = CA,
) -> Answer:
    """One REST call with curl on the host (verifying the server with the CA unless ca is None)."""
    args = ["curl", "-sS", "--max-time", "60", "-X", method, "-w", "\n%{http_code}"]
    args += ["--cacert", ca] if ca else []
    if user is not None:
        args += ["-u", f"{user}:{pw if pw is not None else password(user)}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    res = host.run(" ".join(shlex.quote(a) for a in [*args, base + path]))
    text, _, code = res.stdout.rpartition("\n")
    try:
        parsed: Any = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        parsed = text
    return Answer(int(code) if code.strip().isdigit() else 0, parsed, res.stderr)
