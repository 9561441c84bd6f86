"""The redis role, verified by using Redis: users authenticate, write, read, and are refused."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from infra import Host, default_address, http_get
from infra.redis import ADMIN, APP, EXPORTER, as_user, password, redis_cli

ACL_FILE = "/etc/redis/users.acl"
MAXMEMORY = str(2048 // 2 * 1024 * 1024)  # redis_memory_mb 2048 in the scenario, fraction 0.5


@pytest.fixture(scope="module")
def address(host: Host) -> str:
    return default_address(host)


@pytest.fixture(scope="module")
def hostvars(host: Host) -> dict[str, Any]:
    variables: dict[str, Any] = host.ansible.get_variables()
    return variables


def _wait_until_redis_answers(host: Host) -> None:
    """After a restart or crash: wait for systemd and Redis, bounded, without fixed sleeps."""
    res = host.run(
        "for i in $(seq 100); do "
        f"REDISCLI_AUTH='{password(ADMIN)}' redis-cli --no-auth-warning --user {ADMIN} PING 2>/dev/null"
        " | grep -qx PONG && exit 0; sleep 0.1; done; exit 1"
    )
    assert res.rc == 0, host.run("systemctl status redis-server --no-pager").stdout


def test_debian_redis_of_the_release(host: Host) -> None:
    expected = {"12": "7.0.", "13": "8.0."}[host.system_info.release.split(".")[0]]
    assert f"redis_version:{expected}" in as_user(host, ADMIN, "INFO", "server")


def test_app_user_writes_and_reads_over_the_service_address(host: Host, address: str) -> None:
    key, value = f"infratest:{uuid.uuid4().hex}", uuid.uuid4().hex
    assert as_user(host, APP, "SET", key, value, "EX", "300", address=address) == "OK"
    assert as_user(host, APP, "GET", key, address=address) == value
    assert as_user(host, APP, "ACL", "WHOAMI", address=address) == APP


def test_wrong_password_is_rejected(host: Host, address: str) -> None:
    res = redis_cli(host, "PING", user=APP, pw=password(APP)[::-1] + "x", address=address)
    out = res.stdout + res.stderr
    assert "WRONGPASS" in out
    assert "PONG" not in out


def test_default_user_without_a_password_is_refused(host: Host, address: str) -> None:
    for where in (address, "127.0.0.1"):
        res = redis_cli(host, "GET", "anything", address=where)
        assert "NOAUTH" in res.stdout + res.stderr
    # Nor can anyone log in as `default` (it is off).
    res = redis_cli(host, "PING", user="default", pw=password(APP))
    assert "WRONGPASS" in res.stdout + res.stderr


@pytest.mark.parametrize(
    "command",
    [["SET", "infratest:exporter", "x"], ["FLUSHALL"], ["GET", "infratest:exporter"], ["CONFIG", "SET", "save", ""]],
    ids=lambda c: c[0],
)
def test_exporter_user_cannot_write_flush_or_read_keys(host: Host, command: list[str]) -> None:
    assert as_user(host, EXPORTER, *command).startswith("NOPERM")


@pytest.mark.parametrize("command", [["FLUSHALL"], ["CONFIG", "GET", "maxmemory"], ["KEYS", "*"]], ids=lambda c: c[0])
def test_app_user_cannot_run_dangerous_commands(host: Host, command: list[str]) -> None:
    assert as_user(host, APP, *command).startswith("NOPERM")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("maxmemory", MAXMEMORY),
        ("maxmemory-policy", "allkeys-lru"),
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("save", "3600 1 300 100 60 10000"),
        ("protected-mode", "yes"),
        ("aclfile", ACL_FILE),
    ],
)
def test_settings_in_effect(host: Host, name: str, expected: str) -> None:
    assert as_user(host, ADMIN, "CONFIG", "GET", name).splitlines() == [name, expected]


def test_bound_to_service_address_and_loopback_only(host: Host, address: str) -> None:
    bind = as_user(host, ADMIN, "CONFIG", "GET", "bind").splitlines()[1].split()
    assert sorted(bind) == sorted(["127.0.0.1", address])
    listening = host.socket.get_listening_sockets()
    for port in (6379, 6380, 9121):
        assert f"tcp://0.0.0.0:{port}" not in listening
        assert f"tcp://:::{port}" not in listening
    assert f"tcp://{address}:6379" in listening
    assert "tcp://127.0.0.1:6379" in listening


def test_data_survives_a_restart(host: Host) -> None:
    key, value = f"infratest:restart:{uuid.uuid4().hex}", uuid.uuid4().hex
    assert as_user(host, APP, "SET", key, value) == "OK"
    host.run_test("systemctl restart redis-server")
    _wait_until_redis_answers(host)
    assert as_user(host, APP, "GET", key) == value


def test_data_survives_a_crash_through_the_aof(host: Host) -> None:
    # SIGKILL leaves no chance for a shutdown snapshot: only the AOF brings the key back.
    key, value = f"infratest:crash:{uuid.uuid4().hex}", uuid.uuid4().hex
    before = host.check_output("systemctl show -p MainPID --value redis-server")
    assert as_user(host, APP, "SET", key, value) == "OK"
    host.run_test("systemctl kill -s KILL redis-server")
    res = host.run(
        "for i in $(seq 100); do pid=$(systemctl show -p MainPID --value redis-server); "
        f'[ "$pid" != 0 ] && [ "$pid" != {before} ] && exit 0; sleep 0.1; done; exit 1'
    )
    assert res.rc == 0, "systemd did not restart Redis after it was killed"
    _wait_until_redis_answers(host)
    assert as_user(host, APP, "GET", key) == value
    assert "aof_enabled:1" in as_user(host, ADMIN, "INFO", "persistence")


def test_exporter_reports_redis_up_without_denied_commands(host: Host, address: str) -> None:
    as_user(host, ADMIN, "ACL", "LOG", "RESET")
    for _ in range(2):
        res = http_get(host, f"http://{address}:9121/metrics", "-f")
        assert res.rc == 0, res.stderr
    metrics = dict(line.split(" ", 1) for line in res.stdout.splitlines() if line and not line.startswith("#"))
    assert metrics["redis_up"] == "1"
    # Read through the exporter user's INFO: the exporter sees the real server.
    assert float(metrics["redis_memory_max_bytes"]) == float(MAXMEMORY)
    # Every command the exporter sent was allowed by its ACL rules.
    assert as_user(host, ADMIN, "ACL", "LOG") == ""


def test_exporter_listens_on_the_service_address_only(host: Host) -> None:
    assert http_get(host, "http://127.0.0.1:9121/metrics").rc != 0


def test_secrets_files_are_private(host: Host) -> None:
    acl = host.file(ACL_FILE)
    assert (acl.user, acl.group, acl.mode) == ("redis", "redis", 0o640)
    for user in (ADMIN, APP, EXPORTER):
        assert password(user) not in acl.content_string, "ACL file must hold hashes, not passwords"
    env = host.file("/etc/default/prometheus-redis-exporter")
    assert (env.user, env.mode) == ("root", 0o600)


def test_configuration_check_refuses_a_broken_file(host: Host) -> None:
    assert host.run("aiinfra-redis-check-config /etc/redis/redis.conf").rc == 0
    host.run_test("cp /etc/redis/redis.conf /root/broken.conf")
    host.run_test("echo 'maxmemory-policy sometimes' >> /root/broken.conf")
    res = host.run("aiinfra-redis-check-config /root/broken.conf")
    assert res.rc != 0
    assert "maxmemory-policy" in res.stderr
    host.run_test("printf 'user app on >x +@all\\nuser typo onn\\n' > /root/broken.acl")
    res = host.run("aiinfra-redis-check-config --aclfile /root/broken.acl")
    assert res.rc != 0
    assert "ACL" in res.stderr


def test_kernel_settings_written_and_thp_unit_enabled(host: Host) -> None:
    conf = host.file("/etc/sysctl.d/61-aiinfra-redis.conf").content_string
    assert "vm.overcommit_memory = 1" in conf
    assert "net.core.somaxconn = 4096" in conf
    unit = host.service("aiinfra-redis-disable-thp")
    assert unit.is_enabled
    cat = host.check_output("systemctl cat aiinfra-redis-disable-thp")
    assert "Before=redis-server.service" in cat
    assert "echo never > /sys/kernel/mm/transparent_hugepage/enabled" in cat
    # In a container the kernel is the host's: the unit skips itself instead of failing.
    host.run_test("systemctl start aiinfra-redis-disable-thp")
    state = host.check_output("systemctl show -p ConditionResult -p Result --value aiinfra-redis-disable-thp")
    assert state.split() == ["success", "no"]
    assert host.run("systemctl is-failed aiinfra-redis-disable-thp").stdout.strip() != "failed"


def test_tls_port_when_enabled(host: Host, address: str, hostvars: dict[str, Any]) -> None:
    if not hostvars.get("redis_tls_enabled"):
        listening = host.socket.get_listening_sockets()
        assert not any(sock.endswith(":6380") for sock in listening)
        return
    ca = hostvars["redis_tls_ca_file"]
    key, value = f"infratest:tls:{uuid.uuid4().hex}", uuid.uuid4().hex
    # redis-cli verifies the server's certificate chain against the internal CA.
    assert as_user(host, APP, "SET", key, value, address=address, port=6380, tls_ca=ca) == "OK"
    assert as_user(host, APP, "GET", key, address=address, port=6380, tls_ca=ca) == value
    # The certificate names the service address.
    res = host.run(
        f"openssl s_client -connect {address}:6380 -CAfile {ca} -verify_ip {address} -verify_return_error </dev/null"
    )
    assert "Verify return code: 0 (ok)" in res.stdout, res.stdout + res.stderr
    # A plain-text client on the TLS port gets nowhere.
    plain = redis_cli(host, "PING", user=APP, pw=password(APP), address=address, port=6380)
    assert "PONG" not in plain.stdout
