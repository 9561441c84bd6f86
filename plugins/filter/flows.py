# Copyright: aiinfra.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network flow filters: one declarative list (data/flows.yml) of who talks to whom."""

from __future__ import annotations

import copy
import functools
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import yaml  # type: ignore[import-untyped,unused-ignore]
from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped,unused-ignore]

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DOCUMENTATION = r"""
name: platform_flows
short_description: The platform's allowed inbound connections and firewall rules derived from them
description:
  - C(platform_flows) returns the default flow list (C(data/flows.yml) of this collection)
    plus inventory additions, each entry validated and normalised.
  - C(flows_validate) returns error messages (unknown groups in added flows, bad admin
    networks, bad ports); C(flows_assert) raises them all at once, for preflight.
  - C(host_address) returns a host's service address.
  - C(flow_rules) returns the inbound rules of one host; C(flow_sources) the sources
    allowed to reach a group on a port (pg_hba.conf, Redis/RabbitMQ ACLs).
  - A flow is a dict with keys C(from), C(to), C(port), C(proto), C(purpose); C(from) is a group, C(all) or
    C(admin) (the CIDRs of C(platform_admin_networks)); C(to) is a group or C(all);
    C(port) is an int or an inclusive range string like C("35672-35682").
options:
  _input:
    description: Extra flows to append (C(platform_flows)), or the flow list (other filters).
    type: list
    elements: dict
"""

EXAMPLES = r"""
- name: Build the flow list once
  ansible.builtin.set_fact:
    platform_all_flows: "{{ platform_extra_flows | default([]) | aiinfra.platform.platform_flows }}"

- name: Preflight
  ansible.builtin.assert:
    that: platform_all_flows | aiinfra.platform.flows_assert(groups, platform_admin_networks)

- name: Inbound rules of this host
  ansible.builtin.set_fact:
    firewall_rules: >-
      {{ platform_all_flows | aiinfra.platform.flow_rules(inventory_hostname, groups,
         hostvars, platform_admin_networks) }}

- name: Who may connect to PostgreSQL
  ansible.builtin.set_fact:
    pg_hba_sources: >-
      {{ platform_all_flows | aiinfra.platform.flow_sources('postgres', 5432, groups,
         hostvars, platform_admin_networks) }}
"""

RETURN = r"""
_value:
  description:
    - C(platform_flows) a list of flows; C(flows_validate) a list of messages;
      C(host_address) a string; C(flow_sources) a sorted list of addresses and CIDRs;
      C(flow_rules) a list of dicts with keys C(port), C(proto), C(sources), C(purposes),
      sorted by port and proto.
  type: raw
"""

Port = int | str
Flow = dict[str, Any]

FLOWS_FILE = Path(__file__).resolve().parents[2] / "data" / "flows.yml"
REQUIRED_KEYS = ("from", "to", "port", "proto", "purpose")
PROTOCOLS = ("tcp", "udp")
ADMIN = "admin"
ALL = "all"


class _InvalidInput(ValueError):
    """Bad argument type; public filters turn it into AnsibleFilterError."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _filter_errors(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Report _InvalidInput raised inside a filter as AnsibleFilterError."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except _InvalidInput as exc:
            raise AnsibleFilterError(f"{func.__name__}: {exc}") from exc

    return wrapper


def _describe(flow: Any) -> str:
    if isinstance(flow, Mapping):
        return f"(from {flow.get('from')!s} to {flow.get('to')!s} port {flow.get('port')!s}/{flow.get('proto')!s})"
    return repr(flow)


def _parse_port(port: Any) -> tuple[int, int] | None:
    """Return (first, last) for a valid port or range, None when invalid."""
    if isinstance(port, bool):
        return None
    if isinstance(port, int):
        return (port, port) if 1 <= port <= 65535 else None
    if isinstance(port, str):
        text = port.strip()
        if text.isdigit():
            return _parse_port(int(text))
        first, sep, last = text.partition("-")
        if sep and first.strip().isdigit() and last.strip().isdigit():
            low, high = int(first), int(last)
            if 1 <= low <= high <= 65535:
                return (low, high)
    return None


def _normalise_port(port: Any) -> Port:
    parsed = _parse_port(port)
    if parsed is None:  # pragma: no cover - callers validate first
        raise AnsibleFilterError(f"invalid port {port!r}")
    low, high = parsed
    return low if low == high else f"{low}-{high}"


def _entry_errors(flow: Any, label: str) -> list[str]:
    """Structural problems of one flow entry (keys, port, proto)."""
    if not isinstance(flow, Mapping):
        return [f"{label}: must be a dict with keys {', '.join(REQUIRED_KEYS)}, got {flow!r}"]
    errors: list[str] = []
    where = f"{label} {_describe(flow)}"
    missing = [key for key in REQUIRED_KEYS if flow.get(key) in (None, "")]
    if missing:
        errors.append(f"{where}: missing {', '.join(missing)}; every flow needs {', '.join(REQUIRED_KEYS)}")
    unknown = sorted(str(key) for key in flow if key not in REQUIRED_KEYS)
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(REQUIRED_KEYS)}")
    for key in ("from", "to", "purpose"):
        if key not in missing and not isinstance(flow.get(key), str):
            errors.append(f"{where}: {key} must be a string, got {flow.get(key)!r}")
    if flow.get("to") == ADMIN:
        errors.append(f"{where}: 'admin' can only be a source (from), not a destination (to)")
    if "port" not in missing and _parse_port(flow.get("port")) is None:
        errors.append(
            f"{where}: port {flow.get('port')!r} is invalid; use an integer 1-65535 "
            "or a range string like '35672-35682'"
        )
    proto = flow.get("proto")
    if "proto" not in missing and (not isinstance(proto, str) or proto.lower() not in PROTOCOLS):
        errors.append(f"{where}: proto {proto!r} is invalid; use tcp or udp")
    return errors


def _normalise(flow: Mapping[str, Any]) -> Flow:
    return {
        "from": str(flow["from"]),
        "to": str(flow["to"]),
        "port": _normalise_port(flow["port"]),
        "proto": str(flow["proto"]).lower(),
        "purpose": str(flow["purpose"]),
    }


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise _InvalidInput(f"{what} must be a list of flows, got {type(value).__name__}")
    return list(value)


def load_default_flows(path: Path = FLOWS_FILE) -> list[Flow]:
    """Read the default flow list from data/flows.yml (a copy: callers may change it)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise AnsibleFilterError(f"platform_flows: cannot read the default flow list {path}: {exc}") from exc
    return copy.deepcopy(_read_flows(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _read_flows(path: Path, mtime_ns: int, size: int) -> list[Flow]:
    """The parsed file, once per version of it in a process: a play evaluates the flow
    list for every task of every host, and parsing it costs ~20 ms each time."""
    del mtime_ns, size  # the cache key: a changed file is read again
    try:
        with path.open(encoding="utf-8") as handle:
            document = yaml.load(handle, Loader=_SafeLoader)  # the C or Python *safe* loader
    except (OSError, yaml.YAMLError) as exc:
        raise AnsibleFilterError(f"platform_flows: cannot read the default flow list {path}: {exc}") from exc
    if not isinstance(document, Mapping) or not isinstance(document.get("flows"), list):
        raise AnsibleFilterError(f"platform_flows: {path} must contain a list under the key 'flows'")
    return list(document["flows"])


@_filter_errors
def platform_flows(extra_flows: Any = None, base: Any = None) -> list[Flow]:
    """The default flows (or base) followed by extra_flows, validated and normalised."""
    base_list = load_default_flows() if base is None else _as_list(base, "base")
    extra_list = _as_list(extra_flows, "extra flows")
    errors: list[str] = []
    for index, flow in enumerate(base_list):
        errors += _entry_errors(flow, f"default flow #{index}" if base is None else f"base flow #{index}")
    for index, flow in enumerate(extra_list):
        errors += _entry_errors(flow, f"extra flow #{index}")
    if errors:
        raise AnsibleFilterError("platform_flows: invalid flows:\n- " + "\n- ".join(errors))
    return [_normalise(flow) for flow in base_list + extra_list]


def _default_group_names() -> set[str]:
    names: set[str] = set()
    for flow in load_default_flows():
        if isinstance(flow, Mapping):
            names.update(str(flow.get(key)) for key in ("from", "to"))
    return names


def _network_list(admin_networks: Any) -> list[Any]:
    if admin_networks is None:
        return []
    if isinstance(admin_networks, str):
        return [admin_networks]
    if isinstance(admin_networks, Iterable) and not isinstance(admin_networks, Mapping):
        return list(admin_networks)
    raise _InvalidInput(
        f"platform_admin_networks must be a list of CIDRs like ['192.0.2.0/24'], got {type(admin_networks).__name__}"
    )


def _admin_network_errors(admin_networks: Any) -> list[str]:
    errors: list[str] = []
    try:
        networks = _network_list(admin_networks)
    except _InvalidInput as exc:
        return [str(exc)]
    for index, network in enumerate(networks):
        try:
            ipaddress.ip_network(str(network).strip(), strict=False)
        except ValueError:
            errors.append(
                f"platform_admin_networks[{index}] {network!r} is not a valid IPv4/IPv6 network; "
                "use a CIDR like '192.0.2.0/24' or '2001:db8::/32'"
            )
    return errors


def flows_validate(flows: Any, groups: Mapping[str, Any], admin_networks: Any) -> list[str]:
    """Return every problem found in flows, groups and admin networks (empty when fine)."""
    errors: list[str] = []
    try:
        flow_list = _as_list(flows, "flows")
    except _InvalidInput as exc:
        return [str(exc)]
    known = set(groups) | _default_group_names() | {ALL, ADMIN}
    uses_admin = False
    for index, flow in enumerate(flow_list):
        label = f"flow #{index}"
        entry_errors = _entry_errors(flow, label)
        errors += entry_errors
        if not isinstance(flow, Mapping):
            continue
        uses_admin = uses_admin or flow.get("from") == ADMIN
        for key in ("from", "to"):
            name = flow.get(key)
            if isinstance(name, str) and name and name not in known:
                errors.append(
                    f"{label} {_describe(flow)}: group {name!r} ({key}) is not in the inventory; "
                    "fix the group name or add the group to the inventory"
                )
    network_errors = _admin_network_errors(admin_networks)
    errors += network_errors
    if uses_admin and not network_errors and not _network_list(admin_networks):
        errors.append(
            "platform_admin_networks is empty but flows allow 'admin' sources (e.g. SSH); "
            "set platform_admin_networks to the CIDRs administrators connect from"
        )
    return errors


def flows_assert(flows: Any, groups: Mapping[str, Any], admin_networks: Any) -> list[Flow]:
    """Raise AnsibleFilterError listing every problem; return flows unchanged when valid."""
    errors = flows_validate(flows, groups, admin_networks)
    if errors:
        raise AnsibleFilterError(
            f"flows_assert: {len(errors)} problem(s) in the platform flows:\n- " + "\n- ".join(errors)
        )
    return list(flows)


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value).strip())
    except ValueError:
        return False
    return True


def host_address(hostname: str, hostvars: Mapping[str, Any]) -> str:
    """A host's service address.

    platform_address if set, else ansible_host when it is an IP address, else the
    default IPv4 address from facts.
    """
    if hostname not in hostvars:
        raise AnsibleFilterError(f"host_address: host {hostname!r} is not in the inventory (hostvars)")
    hv = hostvars[hostname]
    configured = hv.get("platform_address")
    if configured not in (None, ""):
        if not _is_ip(configured):
            raise AnsibleFilterError(
                f"host_address: platform_address of host {hostname!r} is {configured!r}, "
                "not an IP address; set platform_address to the host's IPv4/IPv6 address"
            )
        return str(configured).strip()
    ansible_host = hv.get("ansible_host")
    if ansible_host not in (None, "") and _is_ip(ansible_host):
        return str(ansible_host).strip()
    for facts in (
        hv.get("ansible_default_ipv4"),
        (hv.get("ansible_facts") or {}).get("default_ipv4"),
    ):
        if isinstance(facts, Mapping) and facts.get("address") and _is_ip(facts["address"]):
            return str(facts["address"]).strip()
    raise AnsibleFilterError(
        f"host_address: no IP address known for host {hostname!r} (ansible_host is not an IP "
        "and no default_ipv4 fact was gathered); set platform_address for this host in the "
        "inventory, or gather facts first"
    )


def _group_hosts(groups: Mapping[str, Any], name: str) -> list[str]:
    if name == ALL and ALL not in groups:
        hosts: list[str] = []
        for members in groups.values():
            hosts += [str(host) for host in members or []]
        return sorted(set(hosts))
    return [str(host) for host in groups.get(name) or []]


def _sort_key(source: str) -> tuple[int, int, int, str]:
    try:
        network = ipaddress.ip_network(source, strict=False)
    except ValueError:
        return (9, 0, 0, source)
    return (network.version, int(network.network_address), network.prefixlen, source)


def _normalised_networks(admin_networks: Any) -> list[str]:
    errors = _admin_network_errors(admin_networks)
    if errors:
        raise AnsibleFilterError("; ".join(errors))
    return [str(ipaddress.ip_network(str(n).strip(), strict=False)) for n in _network_list(admin_networks)]


def _addresses(hostvars: Mapping[str, Any]) -> Callable[[str], str]:
    """host_address of each host, looked up once per filter call: every hostvars[host]
    has Ansible compute that host's variables again, and the flow list names most
    groups in several flows."""
    return functools.cache(lambda host: host_address(host, hostvars))


def _sources(
    flow: Mapping[str, Any],
    groups: Mapping[str, Any],
    addresses: Callable[[str], str],
    admin_networks: Any,
) -> list[str]:
    if flow["from"] == ADMIN:
        return _normalised_networks(admin_networks)
    return [addresses(host) for host in _group_hosts(groups, flow["from"])]


def _checked_flows(flows: Any, caller: str) -> list[Flow]:
    flow_list = _as_list(flows, "flows")
    errors: list[str] = []
    for index, flow in enumerate(flow_list):
        errors += _entry_errors(flow, f"flow #{index}")
    if errors:
        raise AnsibleFilterError(f"{caller}: invalid flows:\n- " + "\n- ".join(errors))
    return [_normalise(flow) for flow in flow_list]


def _port_key(port: Port) -> tuple[int, int]:
    parsed = _parse_port(port)
    return parsed if parsed is not None else (0, 0)


@_filter_errors
def flow_rules(
    flows: Any,
    host: str,
    groups: Mapping[str, Any],
    hostvars: Mapping[str, Any],
    admin_networks: Any,
) -> list[dict[str, Any]]:
    """Inbound rules of one destination host: [{port, proto, sources, purposes}, ...]."""
    member_of = {name for name, members in groups.items() if host in (members or [])}
    member_of.add(ALL)
    addresses = _addresses(hostvars)
    rules: dict[tuple[Port, str], dict[str, Any]] = {}
    for flow in _checked_flows(flows, "flow_rules"):
        if flow["to"] not in member_of:
            continue
        sources = _sources(flow, groups, addresses, admin_networks)
        if not sources:
            continue
        rule = rules.setdefault(
            (flow["port"], flow["proto"]),
            {
                "port": flow["port"],
                "proto": flow["proto"],
                "sources": set(),
                "purposes": set(),
            },
        )
        rule["sources"].update(sources)
        rule["purposes"].add(flow["purpose"])
    ordered = sorted(rules.values(), key=lambda r: (_port_key(r["port"]), r["proto"]))
    for rule in ordered:
        rule["sources"] = sorted(rule["sources"], key=_sort_key)
        rule["purposes"] = sorted(rule["purposes"])
    return ordered


@_filter_errors
def flow_sources(
    flows: Any,
    to_group: str,
    port: Any,
    groups: Mapping[str, Any],
    hostvars: Mapping[str, Any],
    admin_networks: Any,
    proto: str | None = None,
) -> list[str]:
    """Sorted unique addresses/CIDRs allowed to reach to_group on port (flows to `all` count)."""
    wanted = _parse_port(port)
    if wanted is None:
        raise AnsibleFilterError(
            f"flow_sources: port {port!r} is invalid; use an integer 1-65535 or a range like '35672-35682'"
        )
    found: set[str] = set()
    addresses = _addresses(hostvars)
    for flow in _checked_flows(flows, "flow_sources"):
        if flow["to"] not in (to_group, ALL):
            continue
        if proto is not None and flow["proto"] != proto.lower():
            continue
        low, high = _port_key(flow["port"])
        if wanted[0] == wanted[1]:
            if not low <= wanted[0] <= high:
                continue
        elif (low, high) != wanted:
            continue
        found.update(_sources(flow, groups, addresses, admin_networks))
    return sorted(found, key=_sort_key)


class FilterModule:
    """Platform flow filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "platform_flows": platform_flows,
            "flows_validate": flows_validate,
            "flows_assert": flows_assert,
            "host_address": host_address,
            "flow_rules": flow_rules,
            "flow_sources": flow_sources,
        }
