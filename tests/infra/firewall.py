"""The firewall scenario's connection matrix: what data/flows.yml allows, and what really connects.

The expectation is computed here from the raw flow list, independently of
plugins/filter/flows.py (which the role uses), so a bug in the plugin cannot
hide in both the rules and the test. Probes are real TCP connects (and UDP
echoes) run inside each source container, many at once, with a short timeout.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

REPO = Path(__file__).resolve().parents[2]
FLOWS_FILE = REPO / "data" / "flows.yml"
SCENARIO_FILE = REPO / "molecule" / "firewall" / "molecule.yml"

# The control node reaches the scenario's hosts from the network's gateway,
# the only admin network there (platform_admin_networks: [172.29.20.1/32]).
ADMIN = "admin"
TIMEOUT = 1.5

Pair = tuple[str, str, int, str]  # source host (or ADMIN), destination host, port, proto
Port = tuple[int, str]
Runner = Callable[[str, str], str]  # (host, shell command) -> stdout

# Run inside a source host: try every (address, port, proto) at once and print
# one verdict each. A firewall drop shows as a timeout; every probed port has
# a listener, so "refused" means the test host is not prepared, not a firewall.
PROBE_SCRIPT = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
targets, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
def probe(target):
    address, port, proto = target
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
            if proto == "udp":
                sock.send(b"aiinfra-probe")
                if sock.recv(64) != b"aiinfra-probe":
                    return "error: wrong echo"
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except (TimeoutError, socket.timeout):
            return "timeout"
        except OSError as exc:
            return "error: " + str(exc)
with ThreadPoolExecutor(96) as pool:
    print(json.dumps(list(pool.map(probe, targets))))
"""


@dataclass(frozen=True)
class Scenario:
    """Hosts of the Molecule scenario: addresses and group membership."""

    addresses: dict[str, str]
    groups: dict[str, list[str]]

    @property
    def hosts(self) -> list[str]:
        return sorted(self.addresses)

    def with_member(self, group: str, host: str) -> Scenario:
        groups = {name: list(members) for name, members in self.groups.items()}
        groups.setdefault(group, [])
        if host not in groups[group]:
            groups[group].append(host)
        return Scenario(dict(self.addresses), groups)


def load_scenario(path: Path = SCENARIO_FILE) -> Scenario:
    """Read host names, fixed addresses and groups from the scenario's molecule.yml."""
    platforms = yaml.safe_load(path.read_text())["platforms"]
    addresses: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for platform in platforms:
        name = platform["name"]
        addresses[name] = platform["networks"][0]["ipv4_address"]
        for group in platform.get("groups", []):
            groups.setdefault(group, []).append(name)
    return Scenario(addresses, groups)


def load_flows(path: Path = FLOWS_FILE) -> list[dict[str, Any]]:
    """The raw flow list, read with yaml alone."""
    flows: list[dict[str, Any]] = yaml.safe_load(path.read_text())["flows"]
    return flows


def expand(port: int | str) -> list[int]:
    """All ports of an int or of an inclusive range "first-last"."""
    if isinstance(port, int):
        return [port]
    first, _, last = str(port).partition("-")
    return list(range(int(first), int(last or first) + 1))


def probe_ports(flows: Iterable[Mapping[str, Any]]) -> list[Port]:
    """Every (port, proto) any flow names: each is probed on every host."""
    return sorted({(port, str(flow["proto"])) for flow in flows for port in expand(flow["port"])})


def _members(scenario: Scenario, name: str) -> list[str]:
    if name == "all":
        return scenario.hosts
    if name == ADMIN:
        return [ADMIN]
    return scenario.groups.get(name, [])


def allowed(flows: Iterable[Mapping[str, Any]], scenario: Scenario) -> set[Pair]:
    """Every (source, destination, port, proto) a flow allows, self-pairs included."""
    pairs: set[Pair] = set()
    for flow in flows:
        for src in _members(scenario, str(flow["from"])):
            for dst in _members(scenario, str(flow["to"])):
                pairs.update((src, dst, port, str(flow["proto"])) for port in expand(flow["port"]))
    return pairs


def expected_open(flows: Iterable[Mapping[str, Any]], scenario: Scenario) -> set[Pair]:
    """Pairs between different hosts (or from admin) that must connect."""
    return {pair for pair in allowed(flows, scenario) if pair[0] != pair[1]}


def inbound_by_host(flows: Iterable[Mapping[str, Any]], scenario: Scenario) -> dict[str, set[tuple[str, int, str]]]:
    """Each host's allowed inbound (source, port, proto): equal sets mean equal rulesets."""
    inbound: dict[str, set[tuple[str, int, str]]] = {host: set() for host in scenario.hosts}
    for src, dst, port, proto in allowed(flows, scenario):
        inbound[dst].add((src, port, proto))
    return inbound


def probe_command(targets: Sequence[tuple[str, int, str]], python: str = "python3") -> str:
    return " ".join(shlex.quote(arg) for arg in (python, "-c", PROBE_SCRIPT, json.dumps(list(targets)), str(TIMEOUT)))


def run_local(_host: str, command: str) -> str:
    """Runner for the admin source: the control node itself."""
    return subprocess.run(command, shell=True, check=True, capture_output=True, text=True, timeout=600).stdout


def docker_runner(host: str, command: str) -> str:
    """Runner through `docker exec` (the bench: no Ansible in the loop)."""
    return subprocess.run(
        ["docker", "exec", host, "sh", "-c", command], check=True, capture_output=True, text=True, timeout=600
    ).stdout


@dataclass
class Matrix:
    """Verdicts of one run: pair -> open / timeout / refused / error."""

    verdicts: dict[Pair, str] = field(default_factory=dict)
    seconds: float = 0.0

    def state(self, pair: Pair) -> str:
        return self.verdicts[pair]

    def is_open(self, pair: Pair) -> bool:
        return self.verdicts[pair] == "open"

    def is_closed(self, pair: Pair) -> bool:
        return self.verdicts[pair] in ("timeout", "refused")

    def open_pairs(self) -> set[Pair]:
        return {pair for pair, verdict in self.verdicts.items() if verdict == "open"}


def probe_from(
    src: str, targets: Sequence[tuple[str, int, str]], scenario: Scenario, runner: Runner
) -> dict[Pair, str]:
    """Try (destination host, port, proto) targets from one source host, or from ADMIN (this machine)."""
    wire = [(scenario.addresses[dst], port, proto) for dst, port, proto in targets]
    # The admin source is this machine: the probe runs here, with this Python.
    out = run_local(src, probe_command(wire, sys.executable)) if src == ADMIN else runner(src, probe_command(wire))
    verdicts: list[str] = json.loads(out.strip().splitlines()[-1])
    return {(src, dst, port, proto): v for (dst, port, proto), v in zip(targets, verdicts, strict=True)}


def run_matrix(scenario: Scenario, ports: Sequence[Port], runner: Runner) -> Matrix:
    """From every host and from the control node, try every port of every host."""
    sources = [*scenario.hosts, ADMIN]
    targets = [(dst, port, proto) for dst in scenario.hosts for port, proto in ports]
    start = time.monotonic()
    matrix = Matrix()
    with ThreadPoolExecutor(len(sources)) as pool:
        for part in pool.map(lambda src: probe_from(src, targets, scenario, runner), sources):
            matrix.verdicts.update(part)
    matrix.seconds = time.monotonic() - start
    return matrix


@dataclass
class Check:
    """The matrix compared with the flow list."""

    verified_open: int
    verified_closed: int
    controls_open: int
    errors: list[str]


def check_matrix(matrix: Matrix, expected: set[Pair]) -> Check:
    """Listed pairs must connect, unlisted pairs must not; self-pairs (loopback) prove the listeners."""
    errors: list[str] = []
    verified_open = verified_closed = controls = 0
    for pair, verdict in sorted(matrix.verdicts.items()):
        src, dst, port, proto = pair
        what = f"{src} -> {dst} {port}/{proto}"
        if src == dst:
            controls += 1
            if verdict != "open":
                errors.append(f"{what}: {verdict} on the host itself; the test listener is not running there")
        elif pair in expected:
            if verdict == "open":
                verified_open += 1
            else:
                errors.append(f"{what}: {verdict}, but the flow list allows it")
        elif verdict in ("timeout", "refused"):
            verified_closed += 1
        else:
            errors.append(f"{what}: {verdict}, but no flow allows it")
    return Check(verified_open, verified_closed, controls, errors)


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host, from ansible-playbook's output."""
    recap: dict[str, dict[str, int]] = {}
    for line in output.splitlines():
        parts = line.strip().split()
        if len(parts) > 2 and parts[1] == ":" and "ok=" in line:
            counters = dict(item.split("=", 1) for item in parts[2:] if "=" in item)
            recap[parts[0]] = {key: int(value) for key, value in counters.items()}
    return recap
