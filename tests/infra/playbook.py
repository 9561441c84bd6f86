"""Run ansible-playbook from tests the way the checkout runs it, without side effects."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def ansible_env(**overrides: str) -> dict[str, str]:
    """The environment for an ansible-playbook subprocess started by a test.

    Facts stay in memory: the checkout's jsonfile fact cache is keyed by host
    name, and a local-connection test host named like a lab host would leave
    the control node's facts (its Python path) for the lab's next run.
    """
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_CACHE_PLUGIN="memory")
    env.update(overrides)
    return env


def collection_playbook(
    inventory: str | Path, name: str, *args: str, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run playbooks/<name> of the checkout against an inventory, as an operator would."""
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory)]
    return subprocess.run(
        [*command, str(REPO / "playbooks" / name), *args],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@functools.cache
def _mitogen() -> MappingProxyType[str, str]:
    """Mitogen's strategy, as scripts/lib.sh `use_mitogen` sets it for the lab; none without
    ansible_mitogen installed or with LAB_MITOGEN=0."""
    spec = importlib.util.find_spec("ansible_mitogen")
    if os.environ.get("LAB_MITOGEN", "1") != "1" or spec is None or spec.origin is None:
        return MappingProxyType({})
    plugins = Path(spec.origin).parent / "plugins" / "strategy"
    return MappingProxyType({"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"})


def run_playbook(
    tmp: Path, inventory: dict[str, Any], plays: list[dict[str, Any]], *args: str, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """Write inventory and plays as YAML under tmp and run them with the checkout's ansible-playbook.

    Under Mitogen's strategy: these runs render templates for a few hosts, a module run
    each, and one Python per host that runs them all costs less than a Python per module
    (2026-11-28, one run each: test_elasticsearch_templates.py 38 -> 9 CPU seconds,
    test_app_templates.py 36 -> 27). run_batch's many-host runs stay on the stock
    strategy, where Mitogen's start per host costs more than it saves.
    """
    return _ansible_playbook(tmp, inventory, plays, args, {**_mitogen(), **env}, timeout)


def _ansible_playbook(
    tmp: Path,
    inventory: dict[str, Any],
    plays: list[dict[str, Any]],
    args: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp / "hosts.yml"),
            str(tmp / "play.yml"),
            *args,
        ],
        cwd=REPO,
        env=ansible_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- one run, many cases: a host per case, read back per host ----------------


def _failure_message(result: Mapping[str, Any]) -> str:
    """A failed result's message. A no_log result has none (censored); the operator still
    sees the error (`[ERROR]: Task failed: ...`), which the result keeps as the last line of
    its traceback (run_batch turns tracebacks on for errors)."""
    if "msg" in result:
        return str(result["msg"])
    exception = str(result.get("exception", ""))
    marker = "AnsibleTaskError: "
    return exception.rsplit(marker, 1)[-1] if marker in exception else ""


@dataclass(frozen=True)
class HostRun:
    """What one inventory host did in a run: each task that reported on it, and its recap."""

    name: str
    results: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (task name, result), in order
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """The host failed a task (or was unreachable): the play stopped for it."""
        return self.stats.get("failures", 0) > 0 or self.stats.get("unreachable", 0) > 0

    @property
    def changed(self) -> int:
        return self.stats.get("changed", 0)

    @property
    def ran(self) -> list[str]:
        """Names of the tasks that ran for the host (not skipped), role tasks as `role : task`."""
        return [name for name, result in self.results if not result.get("skipped")]

    def ran_task(self, name: str) -> bool:
        """A task named `name` (or `<role> : name`) ran for the host."""
        return self.result_of(name) is not None

    def result_of(self, name: str) -> dict[str, Any] | None:
        """The host's result of the first task named `name` (or `<role> : name`) that ran for it."""
        return next(
            (
                result
                for task, result in self.results
                if (task == name or task.endswith(f" : {name}")) and not result.get("skipped")
            ),
            None,
        )

    @property
    def messages(self) -> str:
        """The messages of the host's failed tasks (a looped task's failed items), whitespace collapsed."""
        texts: list[str] = []
        for _, result in self.results:
            if result.get("failed"):
                texts.append(_failure_message(result))
                texts += [_failure_message(item) for item in result.get("results", []) if item.get("failed")]
        return " ".join(" ".join(texts).split())

    def __str__(self) -> str:
        """The host's recap and results, for assertion messages."""
        return json.dumps({"host": self.name, "stats": self.stats, "results": self.results}, indent=1, default=str)


@dataclass(frozen=True)
class BatchRun:
    """One ansible-playbook run read through the JSON callback: per host what it did."""

    returncode: int
    output: str  # stdout + stderr, for assertion messages and leak checks
    hosts: dict[str, HostRun]

    def __getitem__(self, host: str) -> HostRun:
        if host not in self.hosts:
            raise AssertionError(f"{host} is not in the run's results:\n{self.output}")
        return self.hosts[host]

    def __iter__(self) -> Iterator[str]:
        return iter(self.hosts)


# --- facts: this machine's, gathered once per test process ------------------------
#
# Every case host of a batch is this machine over the local connection, so each one
# gathering facts (a setup module run, the largest part of a preflight case) gathers
# the same facts. Instead the first time a subset is asked for, one run gathers it
# and Ansible's own jsonfile fact cache entry is kept; a batch then starts with that
# entry as the cached facts of each host its first play gathers for, and Ansible's
# `smart` gathering (ansible.cfg) uses them instead of gathering again. The plays
# are unchanged; a host that is not local, or that a later play gathers for first,
# or a play whose hosts or gathering this cannot resolve, gathers as usual.

_FACTS_SOURCE = "facts-source"
_FACTS: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], tuple[str, bytes]] = {}
_LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def _facts_entry(subset: tuple[str, ...], env: Mapping[str, str]) -> tuple[str, bytes]:
    """(file name prefix, content) of the fact cache entry of this machine gathered with subset."""
    key = (subset, tuple(sorted(env.items())))
    if key not in _FACTS:
        tmp = Path(tempfile.mkdtemp(prefix="facts-"))
        try:
            inventory = {"all": {"hosts": {_FACTS_SOURCE: dict(_LOCAL)}}}
            play = [{"name": "Facts", "hosts": "all", "gather_facts": True, "gather_subset": list(subset), "tasks": []}]
            res = _ansible_playbook(tmp, inventory, play, (), {**env, **_cache_env(tmp / "facts")}, 300)
            assert res.returncode == 0, res.stdout + res.stderr
            (entry,) = (path for path in (tmp / "facts").iterdir() if path.name.endswith(_FACTS_SOURCE))
            _FACTS[key] = (entry.name.removesuffix(_FACTS_SOURCE), entry.read_bytes())
        finally:
            shutil.rmtree(tmp)
    return _FACTS[key]


def _cache_env(directory: Path) -> dict[str, str]:
    return {
        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(directory),
        "ANSIBLE_GATHERING": "smart",
    }


def _inventory_hosts(inventory: Mapping[str, Any]) -> tuple[dict[str, set[str]], dict[str, list[dict[str, Any]]]]:
    """group -> its hosts (children included), and host -> the vars that apply to it (all, groups, its own)."""
    groups: dict[str, set[str]] = {}
    layers: dict[str, list[dict[str, Any]]] = {}

    def walk(name: str, group: Mapping[str, Any], inherited: list[dict[str, Any]]) -> set[str]:
        scope = [*inherited, dict(group.get("vars") or {})]
        members: set[str] = set()
        for host, hostvars in (group.get("hosts") or {}).items():
            layers.setdefault(host, []).extend([*scope, dict(hostvars or {})])
            members.add(host)
        for child, body in (group.get("children") or {}).items():
            members |= walk(child, body or {}, scope)
        groups[name] = groups.get(name, set()) | members
        return members

    walk("all", inventory.get("all") or {}, [])
    return groups, layers


def _resolve(pattern: Any, groups: Mapping[str, set[str]]) -> set[str] | None:
    """The hosts a plain pattern (names of hosts and groups, `:` or `,` separated) selects; None for others."""
    if isinstance(pattern, list):
        pattern = ",".join(str(term) for term in pattern)
    if not isinstance(pattern, str):
        return None
    hosts = groups.get("all", set())
    selected: set[str] = set()
    for term in filter(None, (term.strip() for term in re.split(r"[:,]", pattern))):
        if term in groups and term in hosts:
            return None  # a host named like a group: leave it to Ansible
        if term in groups:
            selected |= groups[term]
        elif term in hosts:
            selected.add(term)
        else:
            return None  # !, &, wildcards, unknown names
    return selected


def _limit(args: tuple[str, ...]) -> str | None:
    for index, arg in enumerate(args):
        if arg in ("--limit", "-l") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--limit="):
            return arg.split("=", 1)[1]
    return None


# Play keywords and command-line options under which a host's gathered facts could differ
# from the facts source's (another connection, user, environment, gathering setup).
_FACTS_KEYWORDS = {
    "connection",
    "become",
    "become_user",
    "environment",
    "module_defaults",
    "gather_timeout",
    "fact_path",
}
_FACTS_OPTIONS = ("-e", "--extra-vars", "-c", "--connection", "-b", "--become", "-u", "--user")


def _seeded_hosts(
    inventory: Mapping[str, Any], plays: list[dict[str, Any]], args: tuple[str, ...]
) -> tuple[set[str], tuple[str, ...]]:
    """The hosts whose facts the first play gathers before anything reads them, and the subset."""
    first = plays[0] if plays else {}
    if (
        first.get("gather_facts", True) is not True
        or _FACTS_KEYWORDS & set(first)
        or any(str(name).startswith("ansible_") for name in first.get("vars") or {})
        or any(arg.split("=", 1)[0] in _FACTS_OPTIONS for arg in args)
    ):
        return set(), ()
    subset = first.get("gather_subset", ["all"])
    subset = [subset] if isinstance(subset, str) else subset
    groups, layers = _inventory_hosts(inventory)
    targets = _resolve(first.get("hosts"), groups)
    limit = _limit(args)
    if limit is not None and targets is not None:
        limited = _resolve(limit, groups)
        targets = None if limited is None else targets & limited
    if targets is None:
        return set(), ()
    # Only hosts that are this machine as the facts source sees it: every inventory level
    # that sets the connection or the interpreter sets the source's.
    local = {
        host
        for host in targets
        if all(layer.get(key, value) == value for layer in layers[host] for key, value in _LOCAL.items())
        and all(any(key in layer for layer in layers[host]) for key in _LOCAL)
    }
    return local, tuple(str(item) for item in subset)


def shared_facts(
    tmp: Path,
    inventory: Mapping[str, Any],
    plays: list[dict[str, Any]],
    args: Sequence[str] = (),
    env: Mapping[str, str] = MappingProxyType({}),
) -> dict[str, str]:
    """The environment overrides that start a run of plays with this machine's facts cached for the
    hosts its first play gathers for (see above); {} where that is not known or not worth it."""
    seeded, subset = _seeded_hosts(inventory, plays, tuple(args))
    if len(seeded) < 2:  # a run of its own to gather once would cost more than it saves
        return {}
    prefix, entry = _facts_entry(subset, env)
    (tmp / "facts").mkdir(exist_ok=True)
    for host in seeded:
        (tmp / "facts" / f"{prefix}{host}").write_bytes(entry)
    return _cache_env(tmp / "facts")


def local_hosts(cases: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One inventory host per test case, on this machine (local connection), with the case's variables."""
    return {name: {**_LOCAL, **hostvars} for name, hostvars in cases.items()}


def run_batch(
    tmp: Path, inventory: dict[str, Any], plays: list[dict[str, Any]], *args: str, timeout: float = 600, **env: str
) -> BatchRun:
    """Run plays once for every host of inventory (a host per test case) and read the result per host.

    The ansible.posix.json callback reports every task's result per host, so each case
    reads only its own host: whether the play stopped for it, its failure messages,
    which tasks ran for it, its recap. A failing host stops only itself (the plays
    must not set any_errors_fatal or max_fail_percentage), so the other cases run on.
    Forks cover every host, so each task runs for all cases at once.
    """
    groups, _ = _inventory_hosts(inventory)
    cache = shared_facts(tmp, inventory, plays, args, env)
    forks = str(max(len(groups.get("all", ())), 1))
    overrides = {
        **env,
        **cache,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        # no profile_tasks summary around the JSON document
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json",
        # the error of a failed no_log task reaches its result only in the traceback
        "ANSIBLE_DISPLAY_TRACEBACK": "error",
    }
    res = _ansible_playbook(tmp, inventory, plays, ["--forks", forks, *args], overrides, timeout)
    output = res.stdout + res.stderr
    start = res.stdout.find("{")
    if start < 0:
        raise AssertionError(f"no JSON from ansible-playbook (rc {res.returncode}):\n{output}")
    try:
        report, _ = json.JSONDecoder().raw_decode(res.stdout[start:])
    except json.JSONDecodeError as error:
        raise AssertionError(f"no JSON from ansible-playbook (rc {res.returncode}): {error}\n{output}") from error
    runs = {name: HostRun(name, stats=dict(stats)) for name, stats in report["stats"].items()}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                runs.setdefault(host, HostRun(host)).results.append((task["task"]["name"], result))
    return BatchRun(res.returncode, output, runs)


def assert_stopped(run: BatchRun, host: str, *needles: str, later: Iterable[str] = ()) -> HostRun:
    """The play stopped for host: it failed, its failure messages name every needle,
    none of the `later` tasks (those after the checks) ran for it, and it changed nothing."""
    result = run[host]
    assert result.stats.get("failures") == 1 and result.stats.get("unreachable") == 0, result
    for needle in needles:
        assert needle in result.messages, result
    for task in later:
        assert not result.ran_task(task), f"{task!r} ran for {host} after its checks failed:\n{result}"
    assert result.changed == 0, result
    return result


def assert_passed(run: BatchRun, host: str, task: str, msg: str) -> HostRun:
    """host got through: nothing failed for it and its `task` (a debug after the checks) said msg."""
    result = run[host]
    assert not result.failed, result
    passed = result.result_of(task)
    assert passed is not None and passed.get("msg") == msg, result
    return result
