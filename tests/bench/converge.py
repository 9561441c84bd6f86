#!/usr/bin/env python3
"""Converge bench of the 8-host lab: prints figures and ratios in one run, asserts nothing.

1. lab up: `scripts/lab down`, then the containers only (`ansible-playbook playbooks/lab.yml`,
   environment as scripts/lab sets it);
2. first converge of playbooks/site.yml, with the per-role profile (ansible.posix.profile_roles);
3. idempotent re-run: time and the changed count summed over the PLAY RECAP (should be 0);
4. the floor: for each lab host, the packages the roles installed (`apt-mark showmanual` on the
   converged host minus the same on a fresh container of its base image), installed with
   `apt-get update && apt-get install --no-install-recommends` on fresh throwaway containers
   (aiinfra-bench-<host>, label aiinfra.lab=bench, started like the lab's hosts, apt through the
   local cache), all hosts in parallel; floor = start to the last host finishing. The converge
   cannot skip `apt-get update` either (the images' lists are stale; the roles refresh them);
5. ratios: first converge / floor (goal <= 1.5), re-run / first converge (goal <= 0.2);
6. control-node memory: max RSS of child processes per step, and machine-wide used memory
   (MemTotal - MemAvailable, sampled each second) during the converges;
7. with --compare-stock: one more idempotent re-run with Ansible's stock strategy instead of
   Mitogen's (scripts/lab uses Mitogen unless LAB_MITOGEN=0), and the ratio of the two re-runs.

Destroys and recreates the lab: run it when nobody else uses it.
    .venv/bin/python tests/bench/converge.py               # everything
    .venv/bin/python tests/bench/converge.py --skip-down   # on the running lab: no step 1, step 2 re-converges
    .venv/bin/python tests/bench/converge.py --floor-only [--hosts pg1,redis1]   # step 4 on the running lab
    .venv/bin/python tests/bench/converge.py --skip-down --compare-stock         # Mitogen against stock
Full ansible-playbook output goes to .cache/bench/converge/ (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from infra.lab import group, hostvars  # noqa: E402

LOGS = REPO / ".cache" / "bench" / "converge"
LAB_STATE_ROOT = os.environ.get("LAB_STATE_ROOT") or "/var/lib/aiinfra-lab"
LAB_IMAGE_PREFIX = os.environ.get("LAB_IMAGE_PREFIX") or "aiinfra-lab/debian"
BENCH_LABEL = "aiinfra.lab=bench"
BENCH_PREFIX = "aiinfra-bench-"
# As scripts/lab (scripts/lib.sh bootstrap) runs ansible-playbook: without, then with Mitogen's
# strategy (scripts/lib.sh use_mitogen).
STOCK_ENV = {
    **os.environ,
    "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "LAB_STATE_ROOT": LAB_STATE_ROOT,
    "LAB_IMAGE_PREFIX": LAB_IMAGE_PREFIX,
    "ANSIBLE_FORCE_COLOR": "0",
}
for _var in ("ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS"):
    STOCK_ENV.pop(_var, None)
LAB_ENV = dict(STOCK_ENV)
if os.environ.get("LAB_MITOGEN", "1") == "1":
    import ansible_mitogen

    LAB_ENV["ANSIBLE_STRATEGY_PLUGINS"] = str(Path(ansible_mitogen.__file__).parent / "plugins" / "strategy")
    LAB_ENV["ANSIBLE_STRATEGY"] = "mitogen_linear"
PROFILE_ENV = {
    "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks,ansible.posix.profile_roles",
    "PROFILE_ROLES_SUMMARY_ONLY": "true",
}
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unr>\d+)\s+"
    r"failed=(?P<failed>\d+)"
)
ROLE_LINE = re.compile(r"^(?P<name>\S.*?) -+ (?P<secs>\d+\.\d+)s$")


@dataclass
class Result:
    cmd: list[str]
    rc: int
    seconds: float
    maxrss_kib: int
    output: str

    def tail(self, chars: int = 3000) -> str:
        return self.output[-chars:]


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None, log: Path | None = None) -> Result:
    """Run cmd in a session of its own (so a timeout ends its whole process group and nothing else);
    stdout and stderr into one text; the max RSS of the command's process tree from wait4."""
    with tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env or LAB_ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = start + timeout
        status, usage, timed_out = 0, None, False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline and not timed_out:
                timed_out = True
                os.killpg(proc.pid, signal.SIGTERM)
                deadline += 15
            elif timed_out and time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if timed_out:
        text += f"\n[bench] timed out after {timeout:.0f} s: process group ended\n"
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {shlex.join(cmd)}\n{text}")
    return Result(cmd, proc.returncode if not timed_out else 124, seconds, usage.ru_maxrss if usage else 0, text)


def checked(res: Result, what: str) -> Result:
    if res.rc != 0:
        raise SystemExit(f"{what} failed (rc {res.rc}, {res.seconds:.0f} s):\n{res.tail()}")
    return res


def docker(*args: str, timeout: float = 120) -> str:
    res = run(["docker", *args], timeout, env=dict(os.environ))
    return checked(res, f"docker {args[0]}").output


class MemorySampler:
    """Machine-wide used memory (MemTotal - MemAvailable) sampled each second: it counts the lab's
    containers and whatever else runs on the machine, not only Ansible."""

    def __init__(self) -> None:
        self.baseline = self.used_mib()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def used_mib() -> float:
        info: dict[str, int] = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0])
        return (info["MemTotal"] - info["MemAvailable"]) / 1024

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, self.used_mib())

    @contextmanager
    def running(self) -> Iterator[MemorySampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.used_mib())


@dataclass
class Playbook:
    label: str
    result: Result
    memory: MemorySampler
    roles: list[tuple[str, float]] = field(default_factory=list)
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, key: str) -> int:
        return sum(row[key] for row in self.recap.values())


def parse_roles(output: str) -> list[tuple[str, float]]:
    """Per-role totals of profile_roles' ROLES RECAP (tasks outside roles appear under their action)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ROLES RECAP")), None)
    if start is None:
        return []
    roles: list[tuple[str, float]] = []
    for line in lines[start + 1 :]:
        match = ROLE_LINE.match(line.strip())
        if not match:
            continue
        if match["name"] == "total":
            break
        roles.append((match["name"], float(match["secs"])))
    return sorted(roles, key=lambda r: -r[1])


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    lines = output.splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("PLAY RECAP")), default=None)
    if start is None:
        return {}
    recap: dict[str, dict[str, int]] = {}
    for line in lines[start + 1 :]:
        match = RECAP.match(line)
        if match:
            recap[match["host"]] = {k: int(v) for k, v in match.groupdict().items() if k != "host"}
    return recap


def converge(label: str, log: str, timeout: float, env: dict[str, str] = LAB_ENV) -> Playbook:
    print(f"[{time.strftime('%H:%M:%S')}] {label} ...", flush=True)
    memory = MemorySampler()
    with memory.running():
        res = run(
            [str(REPO / ".venv" / "bin" / "ansible-playbook"), "playbooks/site.yml"],
            timeout,
            env={**env, **PROFILE_ENV},
            log=LOGS / log,
        )
    book = Playbook(label, res, memory, parse_roles(res.output), parse_recap(res.output))
    if res.rc != 0:
        failed = {h: r for h, r in book.recap.items() if r["failed"] or r["unr"]}
        raise SystemExit(f"{label} failed (rc {res.rc}, {res.seconds:.0f} s; see {LOGS / log}) {failed}:\n{res.tail()}")
    return book


def print_playbook(book: Playbook, top: int) -> None:
    res = book.result
    print(
        f"{book.label}: {res.seconds:.1f} s, changed={book.total('changed')} failed={book.total('failed')} "
        f"unreachable={book.total('unr')} over {len(book.recap)} hosts; "
        f"max RSS of one process {res.maxrss_kib / 1024:.0f} MiB; machine used memory "
        f"{book.memory.baseline:.0f} -> peak {book.memory.peak:.0f} MiB"
    )
    if book.roles:
        total = sum(s for _, s in book.roles)
        print(
            f"  per role (profile_roles, wall time over all hosts), "
            f"top {min(top, len(book.roles))} of {len(book.roles)}:"
        )
        for name, secs in book.roles[:top]:
            print(f"    {name:<40}{secs:>8.1f} s {100 * secs / total:>5.1f} %")
    changed = {h: r["changed"] for h, r in book.recap.items() if r["changed"]}
    if changed:
        print(f"  changed per host: {changed}")


# --- the floor -------------------------------------------------------------------------------


@dataclass
class FloorHost:
    host: str
    image: str
    packages: list[str] = field(default_factory=list)
    not_installable: list[str] = field(default_factory=list)
    update_s: float = 0.0
    install_s: float = 0.0
    end_s: float = 0.0
    error: str = ""


def showmanual(container: str) -> set[str]:
    return set(docker("exec", container, "apt-mark", "showmanual").split())


def start_bench_container(host: str, image: str) -> str:
    """A fresh container started like playbooks/lab.yml starts a lab host, on the default bridge."""
    name = f"{BENCH_PREFIX}{host}"
    existing = docker("ps", "-a", "--filter", f"name=^{name}$", "--format", '{{.ID}} {{.Label "aiinfra.lab"}}')
    for line in existing.splitlines():
        cid, _, label = line.partition(" ")
        if label != "bench":
            raise SystemExit(f"container {name} exists and is not one of this bench's (label aiinfra.lab={label})")
        docker("rm", "-f", cid)
    docker(
        "run", "-d", "--name", name, "--hostname", host, "--label", BENCH_LABEL,
        "--cgroupns=host", "--cap-add=ALL", "--cap-drop=SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "-v", f"{LAB_STATE_ROOT}/apt-proxy.conf:/etc/apt/apt.conf.d/01aiinfra-proxy:ro",
        "--restart=no", "--stop-signal", "SIGRTMIN+3",
        image, "/lib/systemd/systemd",
    )  # fmt: skip
    # Right after the start systemd's bus may not exist yet ("Failed to connect to bus"): retry until it answers.
    deadline = time.monotonic() + 120
    while True:
        state = run(["docker", "exec", name, "systemctl", "is-system-running", "--wait"], 120, env=dict(os.environ))
        if state.output.strip() in ("running", "degraded"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: systemd did not come up ({state.output.strip()!r})")
        time.sleep(0.5)
    return name


def remove_bench_containers(names: list[str]) -> None:
    """Only the containers this run started, by name, and only if they carry the bench label."""
    for name in names:
        res = run(
            ["docker", "ps", "-aq", "--filter", f"name=^{name}$", "--filter", f"label={BENCH_LABEL}"],
            60,
            env=dict(os.environ),
        )
        for cid in res.output.split():
            run(["docker", "rm", "-f", cid], 120, env=dict(os.environ))


def not_installable(container: str, packages: list[str]) -> list[str]:
    """Packages the base image's own apt sources do not know (e.g. from a repository a role adds)."""
    script = 'for p in "$@"; do apt-cache show --no-all-versions "$p" >/dev/null 2>&1 || echo "$p"; done'
    return docker("exec", container, "sh", "-c", script, "sh", *packages).split()


def install(host: FloorHost, container: str, t0: float, timeout: float) -> None:
    env = dict(os.environ)
    base = ["docker", "exec", "-e", "DEBIAN_FRONTEND=noninteractive", container]
    update = run([*base, "apt-get", "update", "-qq"], timeout, env=env)
    host.update_s = update.seconds
    if update.rc != 0:
        host.error, host.end_s = f"apt-get update rc {update.rc}: {update.tail(800)}", time.monotonic() - t0
        return
    if host.packages:
        inst = run(
            [*base, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *host.packages], timeout, env=env
        )
        host.install_s = inst.seconds
        if inst.rc != 0:
            host.error = f"apt-get install rc {inst.rc}: {inst.tail(800)}"
    host.end_s = time.monotonic() - t0


def floor(hosts: list[str], timeout: float) -> tuple[float, list[FloorHost]]:
    """Install each host's role package set on a fresh container of its base image, all in parallel."""
    vars_ = hostvars()
    rows = [FloorHost(h, f"{LAB_IMAGE_PREFIX}:{vars_[h]['lab_image']}") for h in hosts]
    converged: dict[str, set[str]] = {}
    for row in rows:
        lab = f"aiinfra-lab-{row.host}"
        try:
            converged[row.host] = showmanual(lab)
        except SystemExit as err:
            raise SystemExit(
                f"cannot read the package set of lab host {row.host} ({lab}): is the lab up?\n{err}"
            ) from err
    started: list[str] = []
    try:
        print(f"[{time.strftime('%H:%M:%S')}] floor: starting {len(rows)} fresh containers ...", flush=True)
        with ThreadPoolExecutor(max_workers=len(rows)) as pool:
            names = list(pool.map(lambda r: f"{BENCH_PREFIX}{r.host}", rows))
            started.extend(names)
            list(pool.map(lambda r: start_bench_container(r.host, r.image), rows))
        for row, name in zip(rows, names, strict=True):
            wanted = sorted(converged[row.host] - showmanual(name))
            row.not_installable = not_installable(name, wanted) if wanted else []
            row.packages = [p for p in wanted if p not in row.not_installable]
        print(f"[{time.strftime('%H:%M:%S')}] floor: apt-get update + install on {len(rows)} hosts ...", flush=True)
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(rows)) as pool:
            list(pool.map(lambda rn: install(rn[0], rn[1], t0, timeout), zip(rows, names, strict=True)))
        wall = time.monotonic() - t0
    finally:
        remove_bench_containers(started)
    return wall, rows


def print_floor(wall: float, rows: list[FloorHost]) -> None:
    print(
        f"floor: apt-get update + apt-get install --no-install-recommends of each host's role package set "
        f"(lab host's apt-mark showmanual minus its base image's), {len(rows)} fresh containers in parallel:"
    )
    print(f"  {'host':<10}{'image':>6}{'pkgs':>6}{'update s':>10}{'install s':>11}{'done at s':>11}")
    for r in rows:
        print(
            f"  {r.host:<10}{r.image.rsplit(':', 1)[-1]:>6}{len(r.packages):>6}{r.update_s:>10.1f}{r.install_s:>11.1f}"
            f"{r.end_s:>11.1f}{'  FAILED' if r.error else ''}"
        )
    for r in rows:
        print(f"  {r.host} set: {' '.join(r.packages) or '(none)'}")
        if r.not_installable:
            print(f"  {r.host} left out (not in the base image's apt sources): {' '.join(r.not_installable)}")
        if r.error:
            print(f"  {r.host} ERROR: {r.error}")
    print(
        f"  floor = start to the last host done: {wall:.1f} s; longest install part alone "
        f"{max((r.install_s for r in rows), default=0.0):.1f} s"
    )
    if any(r.error for r in rows):
        print("  (some hosts failed: the floor above is not a complete figure)")


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-down", action="store_true", help="keep the running lab: no lab up, step 2 re-converges")
    parser.add_argument("--floor-only", action="store_true", help="only the floor, from the running lab's hosts")
    parser.add_argument("--hosts", help="with --floor-only: comma-separated lab hosts (default: all)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per converge (default 3600, max 7200)")
    parser.add_argument("--top", type=int, default=15, help="roles shown in the profile (default 15)")
    parser.add_argument("--compare-stock", action="store_true", help="one more re-run with the stock strategy (step 7)")
    args = parser.parse_args()
    timeout = max(60.0, min(args.timeout, 7200.0))
    all_hosts = group("all")
    hosts = all_hosts
    if args.hosts:
        if not args.floor_only:
            parser.error("--hosts only goes with --floor-only (the ratios need the floor of every host)")
        hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
        unknown = sorted(set(hosts) - set(all_hosts))
        if unknown:
            parser.error(f"not lab hosts: {unknown} (lab hosts: {all_hosts})")
    if os.geteuid() != 0:
        raise SystemExit("run as root: the bench drives the Docker engine and scripts/lab")

    if args.floor_only:
        wall, rows = floor(hosts, 1800)
        print_floor(wall, rows)
        print(f"max RSS of one child process: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB")
        return

    down = up = None
    if not args.skip_down:
        print(f"[{time.strftime('%H:%M:%S')}] scripts/lab down ...", flush=True)
        down = checked(run([str(REPO / "scripts" / "lab"), "down"], 900, log=LOGS / "lab-down.log"), "scripts/lab down")
        print(f"[{time.strftime('%H:%M:%S')}] ansible-playbook playbooks/lab.yml ...", flush=True)
        up = checked(
            run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "playbooks/lab.yml"], 900, log=LOGS / "lab-up.log"),
            "ansible-playbook playbooks/lab.yml",
        )
    first_label = (
        "re-converge of the running lab (--skip-down: NOT a first converge)" if args.skip_down else "first converge"
    )
    first = converge(first_label, "converge-1.log", timeout)
    rerun = converge("idempotent re-run", "converge-2.log", timeout)
    stock = (
        converge("idempotent re-run, stock strategy", "converge-stock.log", timeout, env=STOCK_ENV)
        if args.compare_stock
        else None
    )
    floor_wall, floor_rows = floor(all_hosts, 1800)

    print()
    print(f"=== converge bench: {len(all_hosts)} lab hosts ({', '.join(all_hosts)}) ===")
    if down and up:
        print(
            f"scripts/lab down: {down.seconds:.1f} s; lab up (playbooks/lab.yml, containers + sudo user + ssh): "
            f"{up.seconds:.1f} s"
        )
    else:
        print("lab up: skipped (--skip-down); the converge below ran on an already converged lab")
    print_playbook(first, args.top)
    print_playbook(rerun, 10)
    print(f"re-run PLAY RECAP: total changed = {rerun.total('changed')} (goal 0)")
    if stock:
        print_playbook(stock, 10)
    print_floor(floor_wall, floor_rows)
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    complete = not any(r.error for r in floor_rows)
    ratio_floor = first.result.seconds / floor_wall if floor_wall else float("nan")
    ratio_rerun = rerun.result.seconds / first.result.seconds

    print()
    print("=== summary ===")
    table: list[tuple[str, str, str]] = []
    if down and up:
        table += [("scripts/lab down", f"{down.seconds:.1f} s", ""), ("lab up (containers)", f"{up.seconds:.1f} s", "")]
    table += [
        ("first converge" if not args.skip_down else "re-converge (--skip-down)", f"{first.result.seconds:.1f} s",
         f"changed={first.total('changed')}"),
        ("idempotent re-run", f"{rerun.result.seconds:.1f} s", f"changed={rerun.total('changed')} (goal 0)"),
        ("floor (update+install)", f"{floor_wall:.1f} s", "" if complete else "INCOMPLETE: a host failed"),
        ("converge / floor", f"{ratio_floor:.2f}", "goal <= 1.5" + ("" if not args.skip_down else "; not a first run")),
        ("re-run / converge", f"{ratio_rerun:.2f}", "goal <= 0.2"),
        ("max RSS, one child", f"{maxrss:.0f} MiB", f"converge {first.result.maxrss_kib / 1024:.0f} MiB"),
        ("used memory peak", f"{max(first.memory.peak, rerun.memory.peak):.0f} MiB",
         f"machine-wide, {first.memory.baseline:.0f} MiB before the converge"),
    ]  # fmt: skip
    strategy = LAB_ENV.get("ANSIBLE_STRATEGY", "linear (stock)")
    table.insert(0, ("strategy", strategy, "LAB_MITOGEN=0: the stock one"))
    if stock:
        table += [
            ("re-run, stock strategy", f"{stock.result.seconds:.1f} s", f"changed={stock.total('changed')}"),
            ("re-run / stock re-run", f"{rerun.result.seconds / stock.result.seconds:.2f}", strategy),
        ]
    for name, value, note in table:
        print(f"  {name:<28}{value:>12}  {note}")
    print(f"logs: {LOGS}")


if __name__ == "__main__":
    main()
