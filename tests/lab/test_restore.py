"""A backup and restore round trip on the lab (issue 11): playbooks/backup.yml saves
PostgreSQL (pgBackRest on backup1), Redis and RabbitMQ; playbooks/restore.yml takes
pg1, the primary itself, back to a point in time: exactly the rows committed before
that time, and it goes on as the read-write primary, archiving a new timeline. A
RabbitMQ user and queue deleted after the backup come back from its definitions copy.

Runs last (file order: test_restore.py after the others): the restore takes the
platform's database back in time. Restores onto a host that ran no PostgreSQL
(disaster recovery, the backup host's firewall admitting it), a crash under load and
Redis restores are the Molecule backup scenario's (molecule/backup).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from infra import Host
from infra.backup import extra_json, playbook, wait_archived, why
from infra.lab import INVENTORY_DIR, address, group, host, secret
from infra.postgresql import psql, psql_local

PG = group("postgres")[0]
REPO = group("backup")[0]
MQ = group("rabbitmq")[0]
TABLE = "backup_round_trip"
MQ_USER = "restore-check"
MQ_QUEUE = "restore.check"


def app_sql(target: Host, sql: str) -> str:
    res = psql(target, sql, user="aiinfra", password=secret("postgresql_app"), dbname="aiinfra")
    assert res.rc == 0, res.stderr
    out: str = res.stdout.strip()
    return out


def lab_playbook(name: str, **variables: object) -> tuple[str, dict[str, Any]]:
    proc, report = playbook(name, *extra_json(**variables), inventory_path=str(INVENTORY_DIR))
    assert proc.returncode == 0, why(proc)
    return proc.stdout, report


@pytest.fixture(scope="module")
def pg() -> Host:
    return host(PG)


def mq_api(method: str, path: str, body: str = "", user: str = "admin", password: str = "") -> str:
    """The HTTP status of a management API call, made on the RabbitMQ node itself."""
    password = password or secret("rabbitmq_admin")
    data = f"-H 'content-type: application/json' --data {shlex.quote(body)}" if body else ""
    out: str = host(MQ).check_output(
        f"curl -sS -o /dev/null -w '%{{http_code}}' -X {method} -u {shlex.quote(user + ':' + password)} {data} "
        f"http://{address(MQ)}:15672/api{path}"
    )
    return out


def test_backup_saves_postgres_redis_and_rabbitmq(pg: Host) -> None:
    app_sql(pg, f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (id int PRIMARY KEY)")
    app_sql(pg, f"INSERT INTO {TABLE} SELECT generate_series(1, 40)")
    body = json.dumps({"password": secret("rabbitmq_app"), "tags": "management"})
    assert mq_api("PUT", f"/users/{MQ_USER}", body) in ("201", "204")
    assert mq_api("PUT", f"/permissions/%2Fapp/{MQ_USER}", json.dumps({"configure": "", "write": "", "read": ""})) in (
        "201",
        "204",
    )
    assert mq_api("PUT", f"/queues/%2Fapp/{MQ_QUEUE}", json.dumps({"durable": True})) in ("201", "204")
    _, report = lab_playbook("backup.yml", backup_type="full")
    lines = [str(line) for line in report["lines"]]
    assert any(line.startswith("saved postgres") and "type=full" in line for line in lines), lines
    # Copies are reported by path: .../<kind>/<host>/<file> sha256=...
    for kind, source in (("redis", group("redis")[0]), ("rabbitmq", group("rabbitmq")[0])):
        assert any(line.startswith("saved ") and f"/{kind}/{source}/" in line for line in lines), lines
    out = host(REPO).check_output("runuser -u pgbackrest -- pgbackrest --stanza=main --output=json info")
    info = json.loads(out)[0]
    assert info["status"]["code"] == 0
    assert info["cipher"] == "aes-256-cbc"
    assert info["backup"][-1]["type"] == "full"


def test_point_in_time_restore_of_the_primary(pg: Host) -> None:
    app_sql(pg, f"INSERT INTO {TABLE} SELECT generate_series(41, 80)")
    target = app_sql(pg, "SELECT clock_timestamp()")
    app_sql(pg, f"INSERT INTO {TABLE} SELECT generate_series(81, 120)")
    # Recovery stops at the first commit past the target: the one of rows 81-120
    # must be in the repository before the restore stops pg1.
    wait_archived(pg, 120)

    _, report = lab_playbook(
        "restore.yml", restore_host=PG, restore_confirm=True, restore_target_time=target, restore_verify_tables=[TABLE]
    )
    assert report["app_connected_as"] == "aiinfra@aiinfra"
    assert report["tables"][TABLE]["rows"] == 80
    assert app_sql(pg, f"SELECT string_agg(id::text, ',' ORDER BY id) FROM {TABLE}") == ",".join(
        str(i) for i in range(1, 81)
    )
    # Promoted at the target: read-write, and archiving its new timeline.
    app_sql(pg, f"INSERT INTO {TABLE} VALUES (81)")
    assert psql_local(pg, "SHOW archive_mode") == "on"
    assert int(psql_local(pg, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), 16) > 1
    print(f"lab point-in-time restore of {PG}: RTO {report['rto_seconds']} s")


def test_rabbitmq_restore_brings_the_user_and_queue_back() -> None:
    assert mq_api("DELETE", f"/queues/%2Fapp/{MQ_QUEUE}") == "204"
    assert mq_api("DELETE", f"/users/{MQ_USER}") == "204"
    try:
        _, report = lab_playbook("restore.yml", restore_component="rabbitmq")
        assert report["missing"] == {"users": [], "vhosts": [], "queues": []}
        assert mq_api("GET", f"/queues/%2Fapp/{MQ_QUEUE}") == "200"
        # The password hash came back with the user: it authenticates (its
        # management tag lets it use the HTTP API).
        assert mq_api("GET", "/whoami", user=MQ_USER, password=secret("rabbitmq_app")) == "200"
        print(f"lab RabbitMQ definitions restore on {MQ}: {report}")
    finally:
        mq_api("DELETE", f"/queues/%2Fapp/{MQ_QUEUE}")
        mq_api("DELETE", f"/users/{MQ_USER}")
