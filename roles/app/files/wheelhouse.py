#!/usr/bin/env python3
"""Fill a wheelhouse for another Python than the one running pip.

`pip download --python-version X.Y` picks wheels for the target but evaluates
environment markers with the running interpreter (e.g. redis' `async-timeout;
python_full_version < "3.11.3"` is skipped on a 3.11.7 control node, yet
Debian 12's 3.11.2 needs it). So: download, then evaluate every wheel's
Requires-Dist with the *target's* marker environment and download what is
missing, until nothing is. Runs on the control node (the app role).
"""

from __future__ import annotations

import argparse
import email.parser
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename


def _environment(full_version: str, machine: str) -> dict[str, str]:
    env = dict(default_environment())
    major_minor = ".".join(full_version.split(".")[:2])
    env.update(
        python_version=major_minor,
        python_full_version=full_version,
        implementation_name="cpython",
        implementation_version=full_version,
        platform_python_implementation="CPython",
        platform_system="Linux",
        sys_platform="linux",
        os_name="posix",
        platform_machine=machine,
    )
    return env


def _present(dest: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for wheel in dest.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        found[canonicalize_name(name)] = str(version)
    return found


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        msg = email.parser.Parser().parsestr(archive.read(meta).decode("utf-8"))
    return list(msg.get_all("Requires-Dist") or [])


def missing(dest: Path, roots: list[str], env: dict[str, str]) -> list[str]:
    """Requirements that apply to the target (markers, extras of present wheels) and have no wheel."""
    present = _present(dest)
    extras: dict[str, set[str]] = {}
    for line in roots:
        req = Requirement(line)
        extras.setdefault(canonicalize_name(req.name), set()).update(req.extras)
    todo: list[str] = []
    for wheel in dest.glob("*.whl"):
        name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
        for line in _requires(wheel):
            req = Requirement(line)
            wanted = [{**env, "extra": extra} for extra in sorted(extras.get(name, set()))] or [{**env, "extra": ""}]
            if req.marker is not None and not any(Marker(str(req.marker)).evaluate(w) for w in wanted):
                continue
            have = present.get(canonicalize_name(req.name))
            if have is None or not req.specifier.contains(have, prereleases=True):
                req.marker = None
                todo.append(str(req))
    return sorted(set(todo))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--python-full-version", required=True, help="target interpreter version, e.g. 3.11.2")
    parser.add_argument("--machine", default="x86_64")
    parser.add_argument("--platform", action="append", required=True, help="wheel platform tag (repeatable)")
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--requirement", type=Path, required=True)
    parser.add_argument("pip_args", nargs="*", help="extra pip download arguments (after --)")
    args = parser.parse_args()
    full = args.python_full_version
    short = "".join(full.split(".")[:2])
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"]
    base += ["--python-version", full, "--implementation", "cp"]
    base += ["--abi", f"cp{short}", "--abi", "abi3", "--abi", "none"]
    base += [f"--platform={p}" for p in args.platform] + ["--dest", str(args.dest), *args.pip_args]
    roots = [ln.strip() for ln in args.requirement.read_text().splitlines() if ln.strip()]
    subprocess.run([*base, "--requirement", str(args.requirement)], check=True)
    env = _environment(full, args.machine)
    for _ in range(10):  # each round adds what the previous wheels need
        todo = missing(args.dest, roots, env)
        if not todo:
            return 0
        print("target-only requirements:", " ".join(todo))
        subprocess.run([*base, *todo], check=True)
    print("wheelhouse did not converge after 10 rounds", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
