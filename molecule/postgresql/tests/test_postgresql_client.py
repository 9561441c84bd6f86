"""pg_hba from the flow list, seen from a host in group `app` (app -> postgres 5432/tcp)."""

from __future__ import annotations

import uuid

import pytest
from infra import Host
from infra.postgresql import group_hosts, psql, secret, service_address

testinfra_hosts = ["ansible://app"]

CA_FILE = "/tmp/platform-ca.crt"


@pytest.fixture(scope="module", params=group_hosts("postgres"), ids=lambda h: h.backend.get_pytest_id())
def server(request: pytest.FixtureRequest, host: Host) -> str:
    """The service address of one postgres host; its CA certificate is copied to the client."""
    pg: Host = request.param
    ca = pg.file("/etc/postgresql/tls/ca.crt").content_string
    host.run(f"cat > {CA_FILE} <<'PEM'\n{ca}PEM\n")
    return service_address(pg)


def test_app_connects_with_verified_tls_writes_and_reads(host: Host, server: str) -> None:
    token = uuid.uuid4().hex
    sql = (
        "CREATE TABLE IF NOT EXISTS infra_check (token text PRIMARY KEY);"
        f"INSERT INTO infra_check VALUES ('{token}');"
        f"SELECT token || '|' || (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) "
        f"FROM infra_check WHERE token = '{token}';"
    )
    res = psql(
        host, sql, user="app", password=secret("pg_app"), address=server, sslmode="verify-full", sslrootcert=CA_FILE
    )
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == f"{token}|true"


def test_plaintext_is_refused(host: Host, server: str) -> None:
    res = psql(host, "SELECT 1", user="app", password=secret("pg_app"), address=server, sslmode="disable")
    assert res.rc != 0
    assert "no pg_hba.conf entry" in res.stderr
    assert "no encryption" in res.stderr


def test_wrong_password_is_refused(host: Host, server: str) -> None:
    res = psql(host, "SELECT 1", user="app", password="wrong-" + secret("pg_app"), address=server, sslmode="require")
    assert res.rc != 0
    assert 'password authentication failed for user "app"' in res.stderr
