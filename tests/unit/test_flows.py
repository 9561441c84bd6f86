"""Unit tests for plugins/filter/flows.py and data/flows.yml."""

from __future__ import annotations

import copy
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped,unused-ignore]

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "filter" / "flows.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aiinfra_flows_filter", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


flows_mod = _load()
platform_flows: Any = flows_mod.platform_flows
flows_validate: Any = flows_mod.flows_validate
flows_assert: Any = flows_mod.flows_assert
host_address: Any = flows_mod.host_address
flow_rules: Any = flows_mod.flow_rules
flow_sources: Any = flows_mod.flow_sources

ADMIN_NETS = ["172.29.10.0/24", "2001:db8::/32"]

# Like the lab inventory (inventories/lab/hosts.yml): elasticsearch exists with no
# hosts; mon1 is also an app host to exercise multi-group membership.
HOSTVARS: dict[str, dict[str, Any]] = {
    "pg1": {"ansible_host": "172.29.10.21"},
    "redis1": {"ansible_host": "172.29.10.22"},
    "mq1": {"ansible_host": "172.29.10.31"},
    "mq2": {"ansible_host": "172.29.10.32"},
    "app1": {"ansible_host": "172.29.10.41"},
    "app2": {"ansible_host": "172.29.10.42"},
    "proxy1": {"ansible_host": "172.29.10.51"},
    "mon1": {"ansible_host": "172.29.10.61"},
    "backup1": {"ansible_host": "172.29.10.71"},
}
GROUPS: dict[str, list[str]] = {
    "all": sorted(HOSTVARS),
    "ungrouped": [],
    "data": ["pg1", "redis1"],
    "postgres": ["pg1"],
    "redis": ["redis1"],
    "integration": ["mq1", "mq2"],
    "rabbitmq": ["mq1", "mq2"],
    "search": [],
    "elasticsearch": [],
    "application": ["app1", "app2", "mon1"],
    "app": ["app1", "app2", "mon1"],
    "presentation": ["proxy1"],
    "proxy": ["proxy1"],
    "observability": ["mon1"],
    "monitoring": ["mon1"],
    "backup": ["backup1"],
}

ALL_HOSTS = [
    "172.29.10.21",
    "172.29.10.22",
    "172.29.10.31",
    "172.29.10.32",
    "172.29.10.41",
    "172.29.10.42",
    "172.29.10.51",
    "172.29.10.61",
    "172.29.10.71",
]


def _rule(rules: list[dict[str, Any]], port: Any, proto: str = "tcp") -> dict[str, Any]:
    matches = [r for r in rules if r["port"] == port and r["proto"] == proto]
    assert len(matches) == 1, f"expected one rule for {port}/{proto}, got {matches}"
    return matches[0]


# --- default list -------------------------------------------------------------------


def test_default_list_loads_and_validates() -> None:
    flows = platform_flows()
    raw = yaml.safe_load((ROOT / "data" / "flows.yml").read_text())["flows"]
    assert len(flows) == len(raw) > 30
    assert flows_validate(flows, GROUPS, ADMIN_NETS) == []
    assert flows_assert(flows, GROUPS, ADMIN_NETS) == flows
    for flow in flows:
        assert set(flow) == {"from", "to", "port", "proto", "purpose"}
        assert flow["purpose"].strip()


@pytest.mark.parametrize(
    ("src", "dst", "port", "proto"),
    [
        ("admin", "all", 22, "tcp"),
        ("admin", "proxy", 80, "tcp"),
        ("admin", "proxy", 443, "tcp"),
        ("admin", "rabbitmq", 15672, "tcp"),
        ("proxy", "app", 8000, "tcp"),
        ("app", "postgres", 5432, "tcp"),
        ("app", "redis", 6379, "tcp"),
        ("app", "rabbitmq", 5672, "tcp"),
        ("app", "elasticsearch", 9200, "tcp"),
        ("monitoring", "all", 9100, "tcp"),
        ("monitoring", "postgres", 9187, "tcp"),
        ("monitoring", "redis", 9121, "tcp"),
        ("monitoring", "rabbitmq", 15692, "tcp"),
        ("monitoring", "elasticsearch", 9114, "tcp"),
        ("monitoring", "proxy", 9113, "tcp"),
        ("monitoring", "app", 8000, "tcp"),
        ("rabbitmq", "rabbitmq", 4369, "tcp"),
        ("rabbitmq", "rabbitmq", 25672, "tcp"),
        ("rabbitmq", "rabbitmq", "35672-35682", "tcp"),
        ("elasticsearch", "elasticsearch", 9300, "tcp"),
        ("postgres", "backup", 22, "tcp"),
        ("backup", "postgres", 22, "tcp"),
        ("proxy", "monitoring", 3000, "tcp"),
        ("proxy", "monitoring", 9090, "tcp"),
        ("proxy", "monitoring", 3100, "tcp"),
        ("proxy", "monitoring", 3200, "tcp"),
        ("proxy", "monitoring", 9093, "tcp"),
        ("monitoring", "monitoring", 9090, "tcp"),
        ("monitoring", "monitoring", 9093, "tcp"),
        ("all", "monitoring", 3100, "tcp"),
        ("app", "monitoring", 4317, "tcp"),
        ("app", "monitoring", 4318, "tcp"),
    ],
)
def test_default_list_covers_required_flows(src: str, dst: str, port: Any, proto: str) -> None:
    keys = {(f["from"], f["to"], f["port"], f["proto"]) for f in platform_flows()}
    assert (src, dst, port, proto) in keys


def test_default_flows_may_name_groups_the_inventory_lacks() -> None:
    groups = {k: v for k, v in GROUPS.items() if k not in ("elasticsearch", "search")}
    assert flows_validate(platform_flows(), groups, ADMIN_NETS) == []
    # ... and simply produce no rules on any host
    for host in HOSTVARS:
        rules = flow_rules(platform_flows(), host, groups, HOSTVARS, ADMIN_NETS)
        assert all(r["port"] not in (9200, 9300, 9114) for r in rules)


# --- extra flows --------------------------------------------------------------------


def test_extra_flows_are_appended_without_copying() -> None:
    extra = [
        {
            "from": "app",
            "to": "redis",
            "port": 26379,
            "proto": "TCP",
            "purpose": "Sentinel",
        }
    ]
    original = copy.deepcopy(extra)
    flows = platform_flows(extra)
    default = platform_flows()
    assert flows[: len(default)] == default
    assert flows[len(default) :] == [
        {
            "from": "app",
            "to": "redis",
            "port": 26379,
            "proto": "tcp",
            "purpose": "Sentinel",
        }
    ]
    assert extra == original  # input not modified
    assert flow_sources(flows, "redis", 26379, GROUPS, HOSTVARS, ADMIN_NETS) == [
        "172.29.10.41",
        "172.29.10.42",
        "172.29.10.61",
    ]


def test_base_replaces_the_default_list() -> None:
    base = [{"from": "admin", "to": "all", "port": 22, "proto": "tcp", "purpose": "SSH"}]
    assert platform_flows(None, base) == base
    assert platform_flows([], base) == base


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        (
            {"from": "app", "to": "redis", "port": 6379, "proto": "tcp"},
            r"extra flow #0 .*missing purpose",
        ),
        (
            {"from": "app", "to": "redis", "port": 0, "proto": "tcp", "purpose": "x"},
            r"port 0 is invalid",
        ),
        (
            {
                "from": "app",
                "to": "redis",
                "port": 70000,
                "proto": "tcp",
                "purpose": "x",
            },
            r"port 70000",
        ),
        (
            {
                "from": "app",
                "to": "redis",
                "port": "20-10",
                "proto": "tcp",
                "purpose": "x",
            },
            r"port '20-10'",
        ),
        (
            {
                "from": "app",
                "to": "redis",
                "port": "http",
                "proto": "tcp",
                "purpose": "x",
            },
            r"port 'http'",
        ),
        (
            {"from": "app", "to": "redis", "port": 1, "proto": "icmp", "purpose": "x"},
            r"proto 'icmp'",
        ),
        (
            {"from": "app", "to": "admin", "port": 1, "proto": "tcp", "purpose": "x"},
            r"only be a source",
        ),
        (
            {
                "from": "app",
                "to": "redis",
                "port": 1,
                "proto": "tcp",
                "purpose": "x",
                "protocol": "tcp",
            },
            r"unknown key\(s\) protocol",
        ),
        ("app->redis", r"extra flow #0: must be a dict"),
    ],
)
def test_invalid_extra_flow_is_rejected(flow: Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        platform_flows([flow])


def test_extra_flows_must_be_a_list() -> None:
    with pytest.raises(AnsibleFilterError, match="extra flows must be a list"):
        platform_flows({"from": "app"})


# --- flows_validate / flows_assert -----------------------------------------------------


def test_unknown_group_in_added_flow() -> None:
    flows = platform_flows(
        [
            {
                "from": "workers",
                "to": "redis",
                "port": 6379,
                "proto": "tcp",
                "purpose": "x",
            }
        ]
    )
    errors = flows_validate(flows, GROUPS, ADMIN_NETS)
    assert len(errors) == 1
    assert "group 'workers' (from) is not in the inventory" in errors[0]
    assert "from workers to redis port 6379/tcp" in errors[0]


def test_empty_group_that_exists_is_valid() -> None:
    flows = platform_flows(
        [
            {
                "from": "search",
                "to": "search",
                "port": 9301,
                "proto": "tcp",
                "purpose": "x",
            }
        ]
    )
    assert flows_validate(flows, GROUPS, ADMIN_NETS) == []


def test_bad_port_and_bad_admin_network_messages() -> None:
    flows = [
        {"from": "app", "to": "redis", "port": 99999, "proto": "tcp", "purpose": "x"},
        {"from": "app", "to": "redis", "port": 6379, "proto": "sctp", "purpose": "x"},
    ]
    errors = flows_validate(flows, GROUPS, ["10.0.0.0/8", "10.0.0.300/24", "office"])
    assert any("flow #0" in e and "port 99999 is invalid" in e for e in errors)
    assert any("flow #1" in e and "proto 'sctp' is invalid" in e for e in errors)
    assert any("platform_admin_networks[1] '10.0.0.300/24' is not a valid" in e for e in errors)
    assert any("platform_admin_networks[2] 'office'" in e for e in errors)
    assert len(errors) == 4
    with pytest.raises(AnsibleFilterError) as info:
        flows_assert(flows, GROUPS, ["office"])
    text = str(info.value)
    assert "3 problem(s)" in text
    assert "port 99999" in text and "'sctp'" in text and "'office'" in text


def test_empty_admin_networks_are_flagged() -> None:
    errors = flows_validate(platform_flows(), GROUPS, [])
    assert errors == [
        (
            "platform_admin_networks is empty but flows allow 'admin' sources (e.g. SSH); "
            "set platform_admin_networks to the CIDRs administrators connect from"
        )
    ]
    assert "not a valid" in flows_validate([], GROUPS, [None])[0]
    assert "must be a list of CIDRs" in flows_validate([], GROUPS, {"a": 1})[0]


def test_admin_networks_may_be_a_single_string() -> None:
    assert flows_validate(platform_flows(), GROUPS, "10.0.0.0/8") == []


# --- host_address -----------------------------------------------------------------------


def test_host_address_fallbacks() -> None:
    hostvars: dict[str, Any] = {
        "a": {"platform_address": "10.0.0.1", "ansible_host": "192.0.2.1"},
        "b": {
            "ansible_host": "192.0.2.2",
            "ansible_default_ipv4": {"address": "10.0.0.2"},
        },
        "c": {
            "ansible_host": "c.example.com",
            "ansible_default_ipv4": {"address": "10.0.0.3"},
        },
        "d": {
            "ansible_host": "d.example.com",
            "ansible_facts": {"default_ipv4": {"address": "10.0.0.4"}},
        },
        "e": {"ansible_host": "2001:db8::5"},
        "f": {
            "platform_address": "",
            "ansible_default_ipv4": {},
            "ansible_facts": {"default_ipv4": {"address": "10.0.0.6"}},
        },
    }
    assert host_address("a", hostvars) == "10.0.0.1"
    assert host_address("b", hostvars) == "192.0.2.2"
    assert host_address("c", hostvars) == "10.0.0.3"
    assert host_address("d", hostvars) == "10.0.0.4"
    assert host_address("e", hostvars) == "2001:db8::5"
    assert host_address("f", hostvars) == "10.0.0.6"


def test_host_address_errors() -> None:
    hostvars: dict[str, Any] = {
        "web.example.com": {"ansible_host": "web.example.com"},
        "bad": {"platform_address": "db.internal"},
    }
    with pytest.raises(
        AnsibleFilterError,
        match=r"no IP address known for host 'web.example.com'.*set platform_address",
    ):
        host_address("web.example.com", hostvars)
    with pytest.raises(
        AnsibleFilterError,
        match=r"platform_address of host 'bad' is 'db.internal', not an IP",
    ):
        host_address("bad", hostvars)
    with pytest.raises(AnsibleFilterError, match=r"host 'nope' is not in the inventory"):
        host_address("nope", hostvars)


# --- flow_rules ---------------------------------------------------------------------


def test_rules_for_postgres_host() -> None:
    rules = flow_rules(platform_flows(), "pg1", GROUPS, HOSTVARS, ADMIN_NETS)
    assert [(r["port"], r["proto"]) for r in rules] == [
        (22, "tcp"),
        (5432, "tcp"),
        (9100, "tcp"),
        (9187, "tcp"),
    ]
    ssh = _rule(rules, 22)
    assert ssh["sources"] == ["172.29.10.0/24", "172.29.10.71", "2001:db8::/32"]
    assert ssh["purposes"] == sorted(ssh["purposes"]) and len(ssh["purposes"]) == 2
    assert _rule(rules, 5432)["sources"] == [
        "172.29.10.41",
        "172.29.10.42",
        "172.29.10.61",
    ]
    assert _rule(rules, 9187)["sources"] == ["172.29.10.61"]


def test_host_in_several_groups_gets_the_union() -> None:
    # mon1 is in monitoring and app (and their tier groups)
    rules = flow_rules(platform_flows(), "mon1", GROUPS, HOSTVARS, ADMIN_NETS)
    ports = {(r["port"], r["proto"]) for r in rules}
    assert {
        (3000, "tcp"),
        (3100, "tcp"),
        (4317, "tcp"),
        (8000, "tcp"),
        (9094, "udp"),
    } <= ports
    app = _rule(rules, 8000)
    assert app["sources"] == ["172.29.10.51", "172.29.10.61"]  # proxy + monitoring
    assert len(app["purposes"]) == 2
    loki = _rule(rules, 3100)
    assert loki["sources"] == ALL_HOSTS  # from all (includes the proxy)


def test_group_with_no_hosts_contributes_nothing() -> None:
    groups = dict(GROUPS, proxy=[], presentation=[])
    rules = flow_rules(platform_flows(), "app1", groups, HOSTVARS, ADMIN_NETS)
    assert _rule(rules, 8000)["sources"] == ["172.29.10.61"]  # only monitoring
    groups = dict(groups, monitoring=[], observability=[])
    rules = flow_rules(platform_flows(), "app1", groups, HOSTVARS, ADMIN_NETS)
    assert [r["port"] for r in rules] == [22]  # rules without sources are omitted


def test_address_needed_only_for_actual_sources() -> None:
    # "lonely" has no address; it is only a source of `all -> monitoring` (log shipping)
    hostvars = dict(HOSTVARS, lonely={})
    groups = dict(GROUPS, all=[*GROUPS["all"], "lonely"], ungrouped=["lonely"])
    assert _rule(flow_rules(platform_flows(), "pg1", groups, hostvars, ADMIN_NETS), 5432)
    with pytest.raises(AnsibleFilterError, match=r"host 'lonely'.*set platform_address"):
        flow_rules(platform_flows(), "mon1", groups, hostvars, ADMIN_NETS)


def test_admin_networks_are_normalised() -> None:
    rules = flow_rules(
        platform_flows(),
        "proxy1",
        GROUPS,
        HOSTVARS,
        ["10.1.2.3/8", "2001:db8::1/32", "192.0.2.7"],
    )
    # Port 80 has only the admin networks as sources (443 also has the blackbox prober on mon1).
    http = _rule(rules, 80)
    assert http["sources"] == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
    with pytest.raises(AnsibleFilterError, match=r"platform_admin_networks\[0\] 'lan'"):
        flow_rules(platform_flows(), "proxy1", GROUPS, HOSTVARS, ["lan"])


def test_port_ranges() -> None:
    rules = flow_rules(platform_flows(), "mq1", GROUPS, HOSTVARS, ADMIN_NETS)
    ports = [r["port"] for r in rules]
    assert ports == [22, 4369, 5672, 9100, 15672, 15692, 25672, "35672-35682"]
    assert _rule(rules, "35672-35682")["sources"] == ["172.29.10.31", "172.29.10.32"]
    assert flow_sources(platform_flows(), "rabbitmq", 35675, GROUPS, HOSTVARS, ADMIN_NETS) == [
        "172.29.10.31",
        "172.29.10.32",
    ]
    assert flow_sources(platform_flows(), "rabbitmq", "35672-35682", GROUPS, HOSTVARS, ADMIN_NETS) == [
        "172.29.10.31",
        "172.29.10.32",
    ]
    assert flow_sources(platform_flows(), "rabbitmq", "35672-35673", GROUPS, HOSTVARS, ADMIN_NETS) == []
    # a range that is a single port is normalised to an int
    assert (
        platform_flows(
            [
                {
                    "from": "app",
                    "to": "app",
                    "port": "9000-9000",
                    "proto": "tcp",
                    "purpose": "x",
                }
            ]
        )[-1]["port"]
        == 9000
    )


def test_rules_are_deterministic() -> None:
    flows = platform_flows()
    expected = flow_rules(flows, "mon1", GROUPS, HOSTVARS, ADMIN_NETS)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = flows[:]
        rng.shuffle(shuffled)
        groups = {name: list(reversed(hosts)) for name, hosts in GROUPS.items()}
        assert flow_rules(shuffled, "mon1", groups, HOSTVARS, list(reversed(ADMIN_NETS))) == expected
    keys = [
        (
            r["port"] if isinstance(r["port"], int) else int(r["port"].split("-")[0]),
            r["proto"],
        )
        for r in expected
    ]
    assert keys == sorted(keys)


# --- flow_sources -------------------------------------------------------------------


def test_flow_sources() -> None:
    flows = platform_flows()
    assert flow_sources(flows, "postgres", 5432, GROUPS, HOSTVARS, ADMIN_NETS) == [
        "172.29.10.41",
        "172.29.10.42",
        "172.29.10.61",
    ]
    # `to: all` flows count: admin SSH plus pgBackRest from the backup host
    assert flow_sources(flows, "postgres", 22, GROUPS, HOSTVARS, ADMIN_NETS) == [
        "172.29.10.0/24",
        "172.29.10.71",
        "2001:db8::/32",
    ]
    assert flow_sources(flows, "monitoring", 9094, GROUPS, HOSTVARS, ADMIN_NETS, proto="udp") == ["172.29.10.61"]
    assert flow_sources(flows, "postgres", 9094, GROUPS, HOSTVARS, ADMIN_NETS) == []
    assert flow_sources(flows, "nosuch", 5432, GROUPS, HOSTVARS, ADMIN_NETS) == []
    with pytest.raises(AnsibleFilterError, match=r"port 'x' is invalid"):
        flow_sources(flows, "postgres", "x", GROUPS, HOSTVARS, ADMIN_NETS)


def test_groups_without_all_key() -> None:
    groups = {k: v for k, v in GROUPS.items() if k != "all"}
    rules = flow_rules(platform_flows(), "mon1", groups, HOSTVARS, ADMIN_NETS)
    assert _rule(rules, 3100)["sources"] == ALL_HOSTS


def test_filter_module() -> None:
    filters = flows_mod.FilterModule().filters()
    assert set(filters) == {
        "platform_flows",
        "flows_validate",
        "flows_assert",
        "host_address",
        "flow_rules",
        "flow_sources",
    }


@pytest.mark.parametrize("name", ["DOCUMENTATION", "EXAMPLES", "RETURN"])
def test_plugin_docs_are_yaml(name: str) -> None:
    assert yaml.safe_load(getattr(flows_mod, name))
