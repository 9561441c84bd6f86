"""The postgresql role's templates rendered with Ansible's templar, for both Debian releases.

PGDG (apt.postgresql.org) is not reachable from this network, so the repository path
is proven here: the rendered deb822 file is parsed by the control node's apt.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped,unused-ignore]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped,unused-ignore]

ROLE = Path(__file__).resolve().parents[2] / "roles" / "postgresql"
RELEASES = {"12": "bookworm", "13": "trixie"}


def render(name: str, **variables: Any) -> str:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    context = {"ansible_managed": "Ansible managed", **defaults, **variables}
    templar = Templar(loader=DataLoader(), variables=context)
    text = (ROLE / "templates" / name).read_text()
    return str(templar.template(trust_as_template(text)))


def deb822(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


@pytest.mark.parametrize("major", sorted(RELEASES))
def test_pgdg_sources(major: str) -> None:
    text = render("pgdg.sources.j2", ansible_facts={"distribution_release": RELEASES[major]})
    assert deb822(text) == {
        "Types": "deb",
        "URIs": "https://apt.postgresql.org/pub/repos/apt",
        "Suites": f"{RELEASES[major]}-pgdg",
        "Components": "main",
        "Signed-By": "/etc/apt/keyrings/apt.postgresql.org.asc",
    }


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (the Debian control node has it)")
@pytest.mark.parametrize("major", sorted(RELEASES))
def test_apt_accepts_the_pgdg_sources(major: str, tmp_path: Path) -> None:
    """apt parses the file and would fetch the release's pgdg suite (--print-uris: no network)."""
    parts = tmp_path / "sources.list.d"
    lists = tmp_path / "lists"
    (lists / "partial").mkdir(parents=True)
    parts.mkdir()
    (parts / "pgdg.sources").write_text(
        render("pgdg.sources.j2", ansible_facts={"distribution_release": RELEASES[major]})
    )
    res = subprocess.run(
        [
            "apt-get",
            "-o",
            "Dir::Etc::SourceList=/dev/null",
            "-o",
            f"Dir::Etc::SourceParts={parts}",
            "-o",
            f"Dir::State::Lists={lists}",
            "-o",
            "Debug::NoLocking=1",
            "--print-uris",
            "update",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "E:" not in res.stderr and "W:" not in res.stderr, res.stderr
    uris = res.stdout
    assert f"https://apt.postgresql.org/pub/repos/apt/dists/{RELEASES[major]}-pgdg/InRelease" in uris
    assert f"/dists/{RELEASES[major]}-pgdg/main/binary-" in uris


def test_apt_rejects_a_broken_sources_file(tmp_path: Path) -> None:
    """The check above can fail: a sources file without Suites is refused."""
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt-get")
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (tmp_path / "lists" / "partial").mkdir(parents=True)
    (parts / "pgdg.sources").write_text("Types: deb\nURIs: https://apt.postgresql.org/pub/repos/apt\n")
    res = subprocess.run(
        [
            "apt-get",
            "-o",
            "Dir::Etc::SourceList=/dev/null",
            "-o",
            f"Dir::Etc::SourceParts={parts}",
            "-o",
            f"Dir::State::Lists={tmp_path / 'lists'}",
            "-o",
            "Debug::NoLocking=1",
            "--print-uris",
            "update",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode != 0 or "E:" in res.stderr


@pytest.mark.parametrize("tls", [True, False])
def test_pg_hba_from_flow_sources(tls: bool) -> None:
    text = render(
        "pg_hba.conf.j2",
        postgresql_tls_enabled=tls,
        _postgresql_loopback=["127.0.0.1", "::1"],
        _postgresql_hba_sources=["172.17.0.4/32", "10.20.4.0/24"],
        postgresql_hba_extra=[{"type": "hostssl", "database": "app", "user": "etl", "address": "10.9.0.0/16"}],
    )
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    kind = "hostssl" if tls else "host"
    assert rules == [
        ["local", "all", "postgres", "peer"],
        ["local", "all", "all", "scram-sha-256"],
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
        ["host", "all", "all", "::1/128", "scram-sha-256"],
        ["hostssl", "app", "etl", "10.9.0.0/16", "scram-sha-256"],
        [kind, "all", "all", "172.17.0.4/32", "scram-sha-256"],
        [kind, "all", "all", "10.20.4.0/24", "scram-sha-256"],
    ]


def test_server_settings_are_quoted() -> None:
    text = render(
        "postgresql.conf.j2",
        _postgresql_memory_mb=2048,
        _postgresql_cpus=2,
        _postgresql_settings={"shared_buffers": "512MB", "log_line_prefix": "%m it's", "max_connections": 200},
    )
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["log_line_prefix = '%m it''s'", "max_connections = '200'", "shared_buffers = '512MB'"]


def test_exporter_dsn_escapes_the_password() -> None:
    text = render(
        "prometheus-postgres-exporter.default.j2",
        postgresql_exporter_password="a/b@c:d%e f",
        _postgresql_exporter_listen=["127.0.0.1", "172.17.0.3"],
    )
    assert (
        "DATA_SOURCE_NAME='postgresql://postgres_exporter:a%2Fb%40c%3Ad%25e%20f@127.0.0.1:5432/postgres?sslmode=disable'"
        in text
    )
    assert 'ARGS="--web.listen-address=127.0.0.1:9187 --web.listen-address=172.17.0.3:9187 "' in text
