"""The firewall role's ruleset as rendered by Ansible, and its preflight refusing bad input.

Rendering runs the role's real template with its real defaults and vars
(ansible-playbook, local connection, output under tmp_path). The rendered
files are checked with `nft -c` in a network namespace of their own, so the
machine's ruleset is never read or changed. The preflight cases run
playbooks/firewall.yml in check mode with the local connection, like
test_preflight.py: a preflight bug could still not change this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from infra.playbook import ansible_env, shared_facts

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "firewall"
ADMIN_V4, ADMIN_V6 = "10.0.0.0/24", "2001:db8::/32"
RULE = re.compile(r"^\s*(ip6?) saddr \{ (.+) \} (tcp|udp) dport (\S+) accept$")

# `multi` is an app server and a monitoring server at once; `quiet` sits in a
# group no flow targets; elasticsearch and rabbitmq have no hosts at all.
INVENTORY: dict[str, Any] = {
    "all": {
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "platform_admin_networks": [ADMIN_V4, ADMIN_V6],
        },
        "children": {
            "app": {"hosts": {"multi": {"ansible_host": "192.0.2.10"}, "app2": {"ansible_host": "192.0.2.11"}}},
            "monitoring": {"hosts": {"multi": {}}},
            "proxy": {"hosts": {"edge": {"ansible_host": "192.0.2.20"}}},
            "postgres": {"hosts": {"db": {"ansible_host": "192.0.2.30"}}},
            "batch": {"hosts": {"quiet": {"ansible_host": "192.0.2.40"}}},
            "elasticsearch": {"hosts": {}},
        },
    }
}
ALL_V4 = {"192.0.2.10", "192.0.2.11", "192.0.2.20", "192.0.2.30", "192.0.2.40"}

Rules = dict[tuple[str, str], dict[str, set[str]]]  # (port, proto) -> family -> sources


def _playbook(
    tmp_path: Path, inventory: dict[str, Any], playbook: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(inventory))
    bindir = Path(sys.executable).parent
    # Every host is this machine: where the first play gathers facts for all of them, they
    # start with this machine's facts gathered once (tests/infra/playbook.py shared_facts).
    facts = shared_facts(tmp_path, inventory, yaml.safe_load(playbook.read_text()), args)
    return subprocess.run(
        [str(bindir / "ansible-playbook"), "-i", str(inv), *args, str(playbook)],
        cwd=REPO,
        env=ansible_env(**facts),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("firewall")
    playbook = tmp / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render the firewall template",
                    "hosts": "all",
                    "gather_facts": False,
                    "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
                    "tasks": [
                        {
                            "name": "Render",
                            "ansible.builtin.template": {
                                "src": str(ROLE / "templates" / "aiinfra-filter.nft.j2"),
                                "dest": f"{tmp}/{{{{ inventory_hostname }}}}.nft",
                                "mode": "0644",
                            },
                        }
                    ],
                }
            ]
        )
    )
    res = _playbook(tmp, INVENTORY, playbook)
    assert res.returncode == 0, res.stdout + res.stderr
    return {path.stem: path.read_text() for path in tmp.glob("*.nft")}


def parse(text: str) -> Rules:
    rules: Rules = {}
    for line in text.splitlines():
        match = RULE.match(line)
        if match:
            family, sources, proto, port = match.groups()
            entry = rules.setdefault((port, proto), {"ip": set(), "ip6": set()})
            assert not entry[family], f"two {family} rules for {port}/{proto}"
            entry[family] = {s.strip() for s in sources.split(",")}
    return rules


def test_every_host_rendered(rendered: dict[str, str]) -> None:
    assert sorted(rendered) == ["app2", "db", "edge", "multi", "quiet"]


def test_host_in_several_groups_gets_the_union_of_their_flows(rendered: dict[str, str]) -> None:
    rules = parse(rendered["multi"])
    # as an app server
    assert rules["8000", "tcp"]["ip"] == {"192.0.2.20", "192.0.2.10"}  # the proxy, and itself as the scraper
    # as a monitoring server
    assert rules["3100", "tcp"]["ip"] == ALL_V4  # every host ships logs (and the proxy proxies Loki)
    assert rules["4317", "tcp"]["ip"] == {"192.0.2.10", "192.0.2.11"}  # traces from the app servers
    assert rules["9090", "tcp"]["ip"] == {"192.0.2.10", "192.0.2.20"}  # Prometheus for the proxy and peers
    assert rules["9094", "udp"]["ip"] == {"192.0.2.10"}
    # every host
    assert rules["22", "tcp"] == {"ip": {ADMIN_V4}, "ip6": {ADMIN_V6}}
    assert rules["9100", "tcp"]["ip"] == {"192.0.2.10"}
    # nothing of the groups it is not in
    assert ("5432", "tcp") not in rules
    assert ("80", "tcp") not in rules
    # one rule per port and protocol, in port order
    assert list(rules) == sorted(rules, key=lambda key: (int(key[0].split("-")[0]), key[1]))


def test_host_whose_groups_have_no_inbound_flows(rendered: dict[str, str]) -> None:
    rules = parse(rendered["quiet"])
    # Only what every host gets: SSH from the admin networks, node_exporter for Prometheus.
    assert set(rules) == {("22", "tcp"), ("9100", "tcp")}
    assert rules["22", "tcp"] == {"ip": {ADMIN_V4}, "ip6": {ADMIN_V6}}
    assert rules["9100", "tcp"] == {"ip": {"192.0.2.10"}, "ip6": set()}


def test_database_host(rendered: dict[str, str]) -> None:
    rules = parse(rendered["db"])
    assert rules["5432", "tcp"]["ip"] == {"192.0.2.10", "192.0.2.11"}
    assert rules["9187", "tcp"]["ip"] == {"192.0.2.10"}
    assert rules["22", "tcp"]["ip"] == {ADMIN_V4}  # no backup host in this inventory


@pytest.mark.parametrize("name", ["multi", "quiet", "db"])
def test_ruleset_shape(rendered: dict[str, str], name: str) -> None:
    text = rendered[name]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    # Replaces only its own table, atomically; never the whole ruleset.
    assert lines[:3] == ["table inet aiinfra_filter", "delete table inet aiinfra_filter", "table inet aiinfra_filter {"]
    assert not any(line.startswith("flush") for line in lines)
    assert "type filter hook input priority filter; policy drop;" in lines
    assert lines.index('iif "lo" accept') < lines.index("ct state invalid drop")
    assert lines[lines.index("chain input {") + 2].startswith("ct state established,related accept")
    icmp = next(line for line in lines if line.startswith("icmp type"))
    icmpv6 = next(line for line in lines if line.startswith("icmpv6 type"))
    for kind in ("echo-request", "destination-unreachable", "time-exceeded"):
        assert kind in icmp and kind in icmpv6
    for kind in ("packet-too-big", "nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert"):
        assert kind in icmpv6
    assert "chain forward" not in text and "chain output" not in text


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="nft -c needs root and nftables")
@pytest.mark.parametrize("name", ["multi", "quiet", "db", "edge"])
def test_nft_accepts_the_rendered_file(rendered: dict[str, str], name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.nft"
    path.write_text(rendered[name])
    # A fresh network namespace: the check never sees this machine's ruleset.
    res = subprocess.run(
        ["unshare", "--net", "nft", "-c", "-f", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr


# --- preflight --------------------------------------------------------------------


def _with(**variables: Any) -> dict[str, Any]:
    inventory: dict[str, Any] = yaml.safe_load(yaml.safe_dump(INVENTORY))
    inventory["all"]["vars"].update(variables)
    return inventory


def _assert_refused(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "cannot be built from the flow list" in out, out
    assert "nothing was changed" in out, out
    for needle in needles:
        assert needle in out, out
    assert "Install nftables" not in out, "a task ran after preflight failed"
    assert not re.search(r"changed=[1-9]", out), out


def _extra_flow(**changes: Any) -> list[dict[str, Any]]:
    flow = {"from": "app", "to": "postgres", "port": 5432, "proto": "tcp", "purpose": "test"}
    return [{**flow, **changes}]


def test_preflight_accepts_a_good_inventory(tmp_path: Path) -> None:
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Firewall preflight",
                    "hosts": "all",
                    "tasks": [
                        {
                            "name": "Preflight",
                            "ansible.builtin.include_role": {
                                "name": "aiinfra.platform.firewall",
                                "tasks_from": "preflight",
                            },
                        }
                    ],
                }
            ]
        )
    )
    res = _playbook(tmp_path, _with(platform_extra_flows=_extra_flow(**{"from": "batch"})), playbook, "--check")
    assert res.returncode == 0, res.stdout + res.stderr


def test_refuses_a_flow_naming_an_unknown_group(tmp_path: Path) -> None:
    res = _playbook(
        tmp_path,
        _with(platform_extra_flows=_extra_flow(**{"from": "batch-workers"})),
        REPO / "playbooks" / "firewall.yml",
        "--check",
    )
    _assert_refused(
        res,
        "platform_extra_flows[0] (from batch-workers to postgres port 5432/tcp)",
        "group 'batch-workers' (from) is not in the inventory",
    )


def test_refuses_a_port_out_of_range(tmp_path: Path) -> None:
    res = _playbook(
        tmp_path, _with(platform_extra_flows=_extra_flow(port=70000)), REPO / "playbooks" / "firewall.yml", "--check"
    )
    _assert_refused(res, "platform_extra_flows[0] (from app to postgres port 70000/tcp)", "port 70000 is invalid")


def test_refuses_an_admin_network_that_does_not_parse(tmp_path: Path) -> None:
    res = _playbook(
        tmp_path,
        _with(platform_admin_networks=[ADMIN_V4, "10.0.0.300/24"]),
        REPO / "playbooks" / "firewall.yml",
        "--check",
    )
    _assert_refused(res, "platform_admin_networks[1] '10.0.0.300/24' is not a valid IPv4/IPv6 network")
