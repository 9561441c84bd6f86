"""The firewall, verified by connecting: every listed flow connects, every other pair does not.

Five hosts (proxy, app, postgres, redis, monitoring) each run a listener on
every port of the flow list, so a connection that fails is the firewall's
doing. The expected matrix comes from data/flows.yml (read here with yaml
alone) and, independently, from the hand-written pairs below.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml
from infra import Host
from infra.firewall import (
    ADMIN,
    Matrix,
    Pair,
    Scenario,
    check_matrix,
    expected_open,
    inbound_by_host,
    load_flows,
    load_scenario,
    parse_recap,
    probe_from,
    probe_ports,
    run_matrix,
)

SCENARIO_DIR = Path(__file__).resolve().parents[1]
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", EPHEMERAL / "inventory" / "ansible_inventory.yml"))
TABLE = "inet aiinfra_filter"
RULE_FILE = "/etc/nftables.d/aiinfra-filter.nft"

# Group -> host in this scenario (one host per group).
PROXY, APP, POSTGRES, REDIS, MONITORING = (
    "firewall-proxy",
    "firewall-app",
    "firewall-postgres",
    "firewall-redis",
    "firewall-monitoring",
)

# Written by hand, not derived from data/flows.yml: segmentation the platform
# promises. If the flow list (or the plugin) ever allows one of these, the
# test fails even if rules and expectation agree with each other.
FORBIDDEN: list[Pair] = [
    (PROXY, POSTGRES, 5432, "tcp"),  # the edge never talks to the database
    (APP, MONITORING, 9090, "tcp"),  # Prometheus' API only for the proxy and monitoring
    (REDIS, POSTGRES, 5432, "tcp"),
    (PROXY, REDIS, 6379, "tcp"),
    (POSTGRES, APP, 8000, "tcp"),  # only the proxy (and the scraper) reach the app
    (APP, POSTGRES, 22, "tcp"),  # SSH only from the admin networks
    (PROXY, APP, 22, "tcp"),
    (REDIS, MONITORING, 9093, "tcp"),
    (APP, PROXY, 9113, "tcp"),  # exporters answer only the scraper
    (POSTGRES, REDIS, 9121, "tcp"),
    (ADMIN, POSTGRES, 5432, "tcp"),  # admins reach the database through SSH, not directly
    (ADMIN, APP, 8000, "tcp"),  # admins go through the proxy
    (PROXY, MONITORING, 9094, "udp"),  # Alertmanager gossip only between monitoring hosts
]
REQUIRED_OPEN: list[Pair] = [
    (PROXY, APP, 8000, "tcp"),
    (APP, POSTGRES, 5432, "tcp"),
    (APP, REDIS, 6379, "tcp"),
    (MONITORING, POSTGRES, 9187, "tcp"),
    (MONITORING, REDIS, 9121, "tcp"),
    (MONITORING, PROXY, 9100, "tcp"),
    (PROXY, MONITORING, 3000, "tcp"),
    (REDIS, MONITORING, 3100, "tcp"),
    (ADMIN, PROXY, 443, "tcp"),
    (ADMIN, POSTGRES, 22, "tcp"),
]


def _runner(name: str, command: str) -> str:
    res = testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}").run(command)
    assert res.rc == 0, f"{name}: {command[:80]}...: {res.stderr}"
    out: str = res.stdout
    return out


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=300).stdout


def converge(tmp_path: Path, *args: str, extra_inventory: dict[str, Any] | None = None) -> tuple[int, str]:
    """ansible-playbook converge.yml against the scenario's inventory (plus an extra inventory file)."""
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(INVENTORY.parent)]
    if extra_inventory is not None:
        extra = tmp_path / f"extra-{time.monotonic_ns()}.yml"
        extra.write_text(yaml.safe_dump(extra_inventory))
        cmd += ["-i", str(extra)]
    cmd += [*args, str(SCENARIO_DIR / "converge.yml")]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    return res.returncode, res.stdout + res.stderr


def changed_hosts(output: str) -> set[str]:
    recap = parse_recap(output)
    assert recap, output
    assert all(c.get("failed", 0) == 0 and c.get("unreachable", 0) == 0 for c in recap.values()), output
    return {host for host, counters in recap.items() if counters.get("changed", 0) > 0}


def add_operator_table(name: str) -> None:
    """What an operator might add by hand: a table of their own with a counter on input."""
    _runner(
        name,
        "nft delete table inet operator 2>/dev/null; nft add table inet operator"
        " && nft add chain inet operator c '{ type filter hook input priority 10; }'"
        " && nft add rule inet operator c counter comment '\"operator rule\"'",
    )


def operator_packets(name: str) -> int:
    listing = _runner(name, "nft list table inet operator")
    assert 'comment "operator rule"' in listing, listing
    return int(listing.split("counter packets ")[1].split()[0])


def wait_booted(name: str) -> None:
    """Until systemd in the container reports the boot finished (bounded)."""
    state = ""
    for _ in range(120):
        state = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{name} did not finish booting: {state}")


def live_table(name: str) -> str:
    return _runner(name, f"nft --stateless list table {TABLE}")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(SCENARIO_DIR / "molecule.yml")


@pytest.fixture(scope="module")
def flows() -> list[dict[str, Any]]:
    return load_flows()


@pytest.fixture(scope="module")
def baseline(scenario: Scenario, flows: list[dict[str, Any]]) -> Matrix:
    return run_matrix(scenario, probe_ports(flows), _runner)


# --- every host ---------------------------------------------------------------


def test_own_table_loaded_with_default_drop(host: Host) -> None:
    table = host.check_output(f"nft list table {TABLE}")
    assert "type filter hook input priority filter; policy drop;" in table
    assert "ct state established,related accept" in table
    assert 'iif "lo" accept' in table
    assert "ip saddr 172.29.20.1 tcp dport 22 accept" in table


def test_loaded_at_boot_by_its_own_unit(host: Host) -> None:
    unit = host.service("aiinfra-firewall")
    assert unit.is_enabled
    assert unit.is_running
    rule_file = host.file(RULE_FILE)
    assert rule_file.mode == 0o600
    assert host.run(f"nft -c -f {RULE_FILE}").rc == 0
    # Only its own table is ever replaced: no flush of the ruleset anywhere.
    assert "flush ruleset" not in rule_file.content_string
    assert f"delete table {TABLE}" in rule_file.content_string


def test_dockers_own_table_survives(host: Host) -> None:
    # Docker's embedded DNS lives in `table ip nat` inside each container;
    # loading the firewall must not have removed it.
    assert "DOCKER_OUTPUT" in host.check_output("nft list table ip nat")
    # ...and still works: Docker's DNS answers container names through it.
    other = "firewall-app" if host.check_output("hostname") != "firewall-app" else "firewall-proxy"
    assert host.run(f"getent hosts {other}").stdout.split()[0].startswith("172.29.20.")


# --- the matrix ---------------------------------------------------------------


def test_every_pair_matches_the_flow_list(
    baseline: Matrix, scenario: Scenario, flows: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    result = check_matrix(baseline, expected_open(flows, scenario))
    with capsys.disabled():
        print(
            f"\nfirewall matrix: {result.verified_open} pairs verified open / "
            f"{result.verified_closed} pairs verified closed "
            f"({result.controls_open} loopback controls, {len(baseline.verdicts)} probes in {baseline.seconds:.1f}s)"
        )
    assert not result.errors, "\n".join(result.errors)
    assert result.verified_open >= 20 and result.verified_closed >= 500


def test_hand_written_forbidden_pairs_are_closed(baseline: Matrix, scenario: Scenario, flows: list[Any]) -> None:
    listed = expected_open(flows, scenario)
    assert not set(FORBIDDEN) & listed, f"the flow list allows pairs that must stay closed: {set(FORBIDDEN) & listed}"
    states = {pair: baseline.state(pair) for pair in FORBIDDEN}
    assert all(state == "timeout" for state in states.values()), states


def test_hand_written_required_pairs_are_open(baseline: Matrix) -> None:
    states = {pair: baseline.state(pair) for pair in REQUIRED_OPEN}
    assert all(state == "open" for state in states.values()), states


# --- changes on the hosts -------------------------------------------------------


def test_nftables_service_does_not_wipe_the_firewall() -> None:
    # Debian's /etc/nftables.conf starts with `flush ruleset`; its unit also
    # flushes on stop. The role's drop-in loads our table again after both.
    # (This also flushes Docker's DNS table in the container: the reboot test
    # below, on the same host, brings it back.)
    before = live_table(POSTGRES)
    _runner(POSTGRES, "systemctl restart nftables.service")
    assert live_table(POSTGRES) == before
    _runner(POSTGRES, "systemctl stop nftables.service")
    assert live_table(POSTGRES) == before


def test_firewall_comes_back_after_a_reboot(scenario: Scenario) -> None:
    before = live_table(POSTGRES)
    _docker("restart", "--time", "20", POSTGRES)
    wait_booted(POSTGRES)
    assert live_table(POSTGRES) == before
    assert _runner(POSTGRES, "systemctl is-active aiinfra-firewall.service").strip() == "active"
    app = probe_from(APP, [(POSTGRES, 5432, "tcp")], scenario, _runner)
    proxy = probe_from(PROXY, [(POSTGRES, 5432, "tcp")], scenario, _runner)
    assert list(app.values()) == ["open"]
    assert list(proxy.values()) == ["timeout"]


@pytest.fixture
def ssh_inventory() -> dict[str, Any]:
    """The proxy host reached over real SSH as root, from the control node (172.29.20.1)."""
    return {
        "all": {
            "hosts": {
                PROXY: {
                    "ansible_connection": "ansible.builtin.ssh",
                    "ansible_host": "172.29.20.11",
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(EPHEMERAL / "ssh" / "id_ed25519"),
                    "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                }
            }
        }
    }


def test_over_ssh_a_removed_table_comes_back(tmp_path: Path, ssh_inventory: dict[str, Any]) -> None:
    before = live_table(PROXY)
    _runner(PROXY, f"nft delete table {TABLE}")
    rc, out = converge(tmp_path, "--limit", PROXY, extra_inventory=ssh_inventory)
    assert rc == 0, out
    # The lock-out guard ran (real SSH, from 172.29.20.1) and passed; the
    # missing table was noticed and loaded again, nothing else changed.
    assert "ok: [firewall-proxy]" in out.split("Check the SSH source against firewall_admin_networks")[1]
    assert changed_hosts(out) == {PROXY}, out
    assert "changed: [firewall-proxy]" in out.split("Load the firewall table")[1].split("TASK")[0]
    assert live_table(PROXY) == before


def test_refuses_a_ruleset_that_would_cut_ansibles_ssh(tmp_path: Path, ssh_inventory: dict[str, Any]) -> None:

    table, rules = live_table(PROXY), _runner(PROXY, f"sha256sum {RULE_FILE}")
    rc, out = converge(
        tmp_path,
        "--limit",
        PROXY,
        "-e",
        '{"platform_admin_networks": ["192.0.2.0/24"]}',
        extra_inventory=ssh_inventory,
    )
    assert rc != 0, out
    assert "would cut the SSH connection" in out
    assert "connects from 172.29.20.1, which is not in platform_admin_networks (192.0.2.0/24)" in out
    assert "Install nftables" not in out, "a task ran after preflight failed"
    assert (live_table(PROXY), _runner(PROXY, f"sha256sum {RULE_FILE}")) == (table, rules)


@pytest.fixture
def redis_in_app(tmp_path: Path) -> Iterator[dict[str, Any]]:
    extra: dict[str, Any] = {"all": {"children": {"app": {"hosts": {REDIS: {}}}}}}
    yield extra
    rc, out = converge(tmp_path)  # back to the scenario's own inventory
    assert rc == 0, out
    assert changed_hosts(out) == {POSTGRES, REDIS, MONITORING}, out
    for name in (APP, POSTGRES):
        _runner(name, "nft delete table inet operator")


def test_a_host_added_to_app_reaches_postgres_and_nothing_else_changes(
    tmp_path: Path,
    baseline: Matrix,
    scenario: Scenario,
    flows: list[dict[str, Any]],
    redis_in_app: dict[str, Any],
) -> None:
    grown = scenario.with_member("app", REDIS)
    assert baseline.state((REDIS, POSTGRES, 5432, "tcp")) == "timeout"
    # Rules added by hand in tables of their own: on a host whose table is
    # reloaded (postgres) and on one left alone (app).
    for name in (APP, POSTGRES):
        add_operator_table(name)

    rc, out = converge(tmp_path, extra_inventory=redis_in_app)
    assert rc == 0, out
    before_rules, after_rules = inbound_by_host(flows, scenario), inbound_by_host(flows, grown)
    touched = {host for host in scenario.hosts if before_rules[host] != after_rules[host]}
    assert touched == {POSTGRES, REDIS, MONITORING}  # by hand: its database, its own app ports, traces
    assert changed_hosts(out) == touched, out

    after = run_matrix(grown, probe_ports(flows), _runner)
    result = check_matrix(after, expected_open(flows, grown))
    assert not result.errors, "\n".join(result.errors)
    assert after.state((REDIS, POSTGRES, 5432, "tcp")) == "open"
    # Exactly the pairs the new membership implies changed, nothing else.
    gained = after.open_pairs() - baseline.open_pairs()
    assert gained == expected_open(flows, grown) - expected_open(flows, scenario)
    assert baseline.open_pairs() - after.open_pairs() == set()
    assert (REDIS, POSTGRES, 5432, "tcp") in gained
    assert not {(REDIS, POSTGRES, 9187, "tcp"), (REDIS, MONITORING, 9090, "tcp")} & gained

    # The operators' tables survived, and their chains (priority 10, after
    # ours) still see the traffic ours accepts.
    for name, source, port in ((POSTGRES, APP, 5432), (APP, PROXY, 8000)):
        packets = operator_packets(name)
        assert probe_from(source, [(name, port, "tcp")], grown, _runner) == {(source, name, port, "tcp"): "open"}
        assert operator_packets(name) > packets
