"""The firewall matrix on the lab: every TCP port any flow names, tried from every lab
host and from the control node (the lab's admin network) to every other host.

The expectation comes from data/flows.yml read with yaml alone (tests/infra/firewall.py),
not from the filter plugin the role uses. The lab runs the real services, not a
listener on every port, so a pair the flow list allows must get through the
firewall: connected, or refused by the host because nothing listens there. A pair
no flow allows must be dropped (a timeout: the policy is drop, never reject). UDP is
left to molecule/firewall, whose echo listeners tell a drop from silence.
"""

from __future__ import annotations

from collections import Counter

from infra.firewall import ADMIN, Scenario, allowed, load_flows, probe_ports, run_matrix
from infra.lab import address, group, host, hostvars


def lab_scenario() -> Scenario:
    names = sorted(hostvars())
    groups = {
        name: group(name)
        for name in ("postgres", "redis", "rabbitmq", "elasticsearch", "app", "proxy", "monitoring", "backup")
    }
    return Scenario({name: address(name) for name in names}, groups)


def test_every_flow_connects_and_nothing_else_does() -> None:
    flows = load_flows()
    scenario = lab_scenario()
    expected = allowed(flows, scenario)
    ports = [(port, proto) for port, proto in probe_ports(flows) if proto == "tcp"]
    matrix = run_matrix(scenario, ports, lambda name, command: str(host(name).check_output(command)))
    errors = []
    seen: Counter[str] = Counter()
    for pair, verdict in sorted(matrix.verdicts.items()):
        src, dst, port, proto = pair
        if src == dst:
            continue  # loopback: always allowed
        what = f"{src} -> {dst} {port}/{proto}"
        if pair in expected:
            seen["allowed"] += 1
            if verdict not in ("open", "refused"):
                errors.append(f"{what}: {verdict}, but the flow list allows it")
            elif verdict == "open":
                seen["open"] += 1
        else:
            seen["dropped"] += 1
            if verdict != "timeout":
                errors.append(f"{what}: {verdict}, but no flow allows it")
    assert not errors, errors
    # The matrix is not empty on either side, and real services answered (per host:
    # the eight-host lab sees about 60 allowed and 600 dropped pairs, one host 4 and 34).
    hosts = len(scenario.hosts)
    assert min(seen["allowed"], seen["open"]) >= 4 * hosts and seen["dropped"] >= 30 * hosts, seen
    # SSH from the admin network reaches every host; the segmentation holds between hosts.
    assert all(matrix.verdicts[(ADMIN, dst, 22, "tcp")] == "open" for dst in scenario.hosts)
