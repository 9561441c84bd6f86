"""The postgresql role on the database hosts, verified by using the server."""

from __future__ import annotations

import uuid

import pytest
from infra import Host, http_get
from infra.postgresql import group_hosts, psql, psql_local, secret, service_address

testinfra_hosts = ["ansible://postgres"]

TLS_DIR = "/etc/postgresql/tls"


@pytest.fixture(scope="module")
def app_password() -> str:
    return secret("pg_app")


def test_server_and_exporter_run(host: Host) -> None:
    assert host.service("prometheus-postgres-exporter").is_running
    assert host.run("pg_isready --quiet").rc == 0
    assert host.run("systemctl is-system-running").stdout.strip() == "running"


def test_listens_on_the_service_address_and_loopback_only(host: Host) -> None:
    listening = host.socket.get_listening_sockets()
    assert "tcp://127.0.0.1:5432" in listening
    assert f"tcp://{service_address(host)}:5432" in listening
    for wildcard in ("tcp://0.0.0.0:5432", "tcp://:::5432", "tcp://0.0.0.0:9187", "tcp://:::9187"):
        assert wildcard not in listening


def test_app_user_writes_and_reads_over_tcp(host: Host, app_password: str) -> None:
    token = uuid.uuid4().hex
    sql = (
        "CREATE TABLE IF NOT EXISTS infra_check (token text PRIMARY KEY);"
        f"INSERT INTO infra_check VALUES ('{token}');"
        f"SELECT token FROM infra_check WHERE token = '{token}';"
    )
    res = psql(host, sql, user="app", password=app_password)
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == token


def test_wrong_password_is_rejected(host: Host, app_password: str) -> None:
    res = psql(host, "SELECT 1", user="app", password=app_password + "x")
    assert res.rc != 0
    assert 'password authentication failed for user "app"' in res.stderr


def test_passwords_are_stored_as_scram(host: Host) -> None:
    rows = psql_local(host, "SELECT rolname FROM pg_authid WHERE rolpassword NOT LIKE 'SCRAM-SHA-256$%'")
    assert rows == ""
    assert (
        psql_local(
            host,
            "SELECT count(*) FROM pg_authid WHERE rolname IN ('app', 'postgres', 'postgres_exporter') "
            "AND rolpassword LIKE 'SCRAM-SHA-256$%'",
        )
        == "3"
    )


def test_superuser_password_works_over_tcp(host: Host) -> None:
    res = psql(
        host, "SELECT current_setting('is_superuser')", user="postgres", password=secret("pg_admin"), dbname="postgres"
    )
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == "on"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        # PGTune for postgresql_memory_mb 2048: 1/4 and 3/4 of it, above the seed floors.
        ("shared_buffers", "512MB"),
        ("effective_cache_size", "1536MB"),
        ("max_connections", "200"),
        ("log_min_duration_statement", "1s"),
        ("wal_level", "replica"),
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
        ("archive_mode", "on"),
        ("archive_command", "/bin/true"),
        ("password_encryption", "scram-sha-256"),
        ("shared_preload_libraries", "pg_stat_statements"),
        ("ssl", "on"),
        ("data_checksums", "on"),
        ("random_page_cost", "1.1"),
    ],
)
def test_settings_in_effect(host: Host, setting: str, expected: str) -> None:
    assert psql_local(host, f"SHOW {setting}") == expected


def test_nothing_waits_for_a_restart(host: Host) -> None:
    assert psql_local(host, "SELECT string_agg(name, ',') FROM pg_settings WHERE pending_restart") == ""


def test_pg_stat_statements_records_queries(host: Host, app_password: str) -> None:
    marker = f"stmt_marker_{uuid.uuid4().hex[:8]}"
    assert psql(host, f"SELECT 1 AS {marker}", user="app", password=app_password).rc == 0
    calls = psql_local(host, f"SELECT sum(calls) FROM pg_stat_statements WHERE query LIKE '%{marker}%'", "app")
    assert calls and int(calls) >= 1
    assert psql_local(host, "SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'", "app") == "pg_trgm"


def test_slow_queries_are_logged(host: Host, app_password: str) -> None:
    marker = uuid.uuid4().hex[:8]
    assert psql(host, f"SELECT pg_sleep(1.1), '{marker}'", user="app", password=app_password).rc == 0
    psql_local(host, "SELECT 1")
    log = host.check_output(
        f"grep -h 'duration: .* ms  statement: SELECT pg_sleep(1.1), .{marker}.' "
        "/var/log/postgresql/postgresql-*-main.log"
    )
    assert "app@app from 127.0.0.1" in log  # log_line_prefix names user, database, client


def test_data_survives_a_restart(host: Host, app_password: str) -> None:
    token = uuid.uuid4().hex
    assert (
        psql(
            host,
            "CREATE TABLE IF NOT EXISTS infra_check (token text PRIMARY KEY);"
            f"INSERT INTO infra_check VALUES ('{token}')",
            user="app",
            password=app_password,
        ).rc
        == 0
    )
    host.check_output("systemctl restart postgresql")
    host.check_output("for i in $(seq 60); do pg_isready -q && exit 0; sleep 0.5; done; exit 1")
    res = psql(host, f"SELECT token FROM infra_check WHERE token = '{token}'", user="app", password=app_password)
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == token


def test_hba_refuses_a_host_outside_the_flows(host: Host, app_password: str) -> None:
    """The service address itself and the other postgres host are in no flow to postgres."""
    own = psql(host, "SELECT 1", user="app", password=app_password, address=service_address(host), sslmode="require")
    assert own.rc != 0
    assert "no pg_hba.conf entry" in own.stderr
    for other in group_hosts("postgres"):
        address = service_address(other)
        if address == service_address(host):
            continue
        res = psql(host, "SELECT 1", user="app", password=app_password, address=address, sslmode="require")
        assert res.rc != 0
        assert "no pg_hba.conf entry" in res.stderr


def test_hba_is_clean(host: Host) -> None:
    assert psql_local(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"
    methods = psql_local(
        host, "SELECT string_agg(DISTINCT auth_method, ',' ORDER BY auth_method) FROM pg_hba_file_rules"
    )
    assert methods == "peer,scram-sha-256"
    remote = psql_local(
        host,
        "SELECT string_agg(DISTINCT type, ',') FROM pg_hba_file_rules "
        "WHERE address IS NOT NULL AND address NOT IN ('127.0.0.1', '::1')",
    )
    assert remote == "hostssl"


def test_tls_on_loopback(host: Host, app_password: str) -> None:
    res = psql(
        host,
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        user="app",
        password=app_password,
        sslmode="verify-full",
        sslrootcert=f"{TLS_DIR}/ca.crt",
    )
    assert res.rc == 0, res.stderr
    assert res.stdout.strip().startswith("t|TLSv1.")


def test_certificate_names_the_host(host: Host) -> None:
    text = host.check_output(f"openssl x509 -in {TLS_DIR}/server.crt -noout -text")
    assert f"IP Address:{service_address(host)}" in text
    assert f"DNS:{host.check_output('hostname')}" in text
    key = host.file(f"{TLS_DIR}/server.key")
    assert key.user == "postgres" and key.mode == 0o600
    assert host.run(f"openssl verify -CAfile {TLS_DIR}/ca.crt {TLS_DIR}/server.crt").rc == 0


def test_exporter_reports_pg_up(host: Host) -> None:
    for address in ("127.0.0.1", service_address(host)):
        res = http_get(host, f"http://{address}:9187/metrics", "-f")
        assert res.rc == 0, res.stderr
        assert "\npg_up 1\n" in res.stdout
    defaults = host.file("/etc/default/prometheus-postgres-exporter")
    assert defaults.mode == 0o600 and defaults.user == "root"


def test_monitoring_role_has_least_privilege(host: Host) -> None:
    password = secret("pg_exporter")
    attrs = psql_local(
        host,
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
        "pg_has_role('postgres_exporter', 'pg_monitor', 'member') "
        "FROM pg_roles WHERE rolname = 'postgres_exporter'",
    )
    assert attrs == "f|f|f|f|t"
    # Statistics are readable, application data is not reachable.
    res = psql(
        host,
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE query <> ''",
        user="postgres_exporter",
        password=password,
        dbname="postgres",
    )
    assert res.rc == 0, res.stderr
    denied = psql(host, "SELECT 1", user="postgres_exporter", password=password, dbname="app")
    assert denied.rc != 0
    assert "permission denied for database" in denied.stderr


def test_reporting_role_connects_but_reads_nothing(host: Host, app_password: str) -> None:
    psql(host, "CREATE TABLE IF NOT EXISTS infra_check (token text PRIMARY KEY)", user="app", password=app_password)
    res = psql(host, "SELECT count(*) FROM infra_check", user="reporting", password=secret("pg_reporting"))
    assert res.rc != 0
    assert "permission denied for table infra_check" in res.stderr


def test_config_checker_rejects_a_bad_file(host: Host) -> None:
    """The validate: command the role uses really refuses a bad setting."""
    version = psql_local(host, "SELECT current_setting('server_version_num')::int / 10000")
    host.check_output(
        "printf \"shared_buffers = 'lots'\\n\" > /tmp/bad.conf && printf \"work_mem = '8MB'\\n\" > /tmp/good.conf"
    )
    bad = host.run(f"/usr/local/sbin/aiinfra-postgresql-check-conf {version} main /tmp/bad.conf")
    assert bad.rc != 0
    assert "shared_buffers" in bad.stderr
    assert host.run(f"/usr/local/sbin/aiinfra-postgresql-check-conf {version} main /tmp/good.conf").rc == 0
