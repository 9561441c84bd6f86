"""Rolling releases under load: playbooks/deploy.yml and rollback.yml lose no request.

A load generator sends reads and writes through nginx the whole time each
playbook runs; every answer must be a success. Releases are real wheels built
from a copy of app/ with another version (and, for the failing case, code that
cannot start). Runs after test_app.py and test_browser.py (file order): it
leaves every app host on the release site.yml converged.
"""

from __future__ import annotations

import concurrent.futures
import re
import subprocess

import pytest
from infra.lab import host, playbook, secret
from infra.release import APP_HOSTS, PROXY_HOST, Load, build_wheel, versions

# Seconds each of the load's 4 threads waits between requests. On the idle
# lab (30 s each, 2026-11-28): 15 requests a second (one every ~65 ms while a
# host switches) with 0.31 of the 2 cores busy, where the 0.1 s that
# tests/bench/deploy.py keeps sent 35 with 0.56 busy. The load runs beside the
# rest of the suite for the length of four rollouts.
PAUSE = 0.25


@pytest.fixture(scope="module")
def api_key() -> str:
    return secret("app_api_key")


@pytest.fixture(scope="module")
def original() -> dict[str, str]:
    before = versions()
    assert len(set(before.values())) == 1, before
    return before


def failed_requests(load: Load) -> str:
    """The load's failed requests and what nginx logged about its upstreams meanwhile."""
    log = host(PROXY_HOST).run("tail -n 15 /var/log/nginx/error.log").stdout
    return "\n".join([*load.errors, "nginx error.log:", log])


def test_deploy_under_load_loses_no_request(api_key: str, original: dict[str, str]) -> None:
    wheel = build_wheel("0.1.1")
    with Load(api_key, PAUSE).running() as load:
        res = playbook("deploy.yml", "-e", f"app_wheel={wheel}")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert load.results["failed"] == 0, failed_requests(load)
    assert load.results["ok"] > 50, load.results
    assert set(versions().values()) == {"0.1.1"}


def test_failing_release_is_rolled_back_and_stops_the_rollout(api_key: str) -> None:
    wheel = build_wheel("0.1.2", broken=True)
    with Load(api_key, PAUSE).running() as load:
        res = playbook("deploy.yml", "-e", f"app_wheel={wheel}", "-e", "app_ready_timeout=20")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-4000:]
    # The first host failed at the restart, went back, and the second was never touched.
    first = next(iter(APP_HOSTS))
    assert re.search(rf"{first} failed at step \"install and switch to the new release\"", out), out[-4000:]
    assert "Rolled back to 0.1.1" in out, out[-4000:]
    for name in APP_HOSTS:  # the failed release was removed; the other hosts never got it
        assert not host(name).file("/opt/aiinfra-app/releases/0.1.2").exists, name
    assert load.results["failed"] == 0, failed_requests(load)
    assert set(versions().values()) == {"0.1.1"}


def env_releases() -> dict[str, str]:
    """APP_RELEASE of each app host's environment file (what /api/version reports as the release)."""
    return {
        name: host(name).check_output("grep -oP '^APP_RELEASE=\"\\K[^\"]*' /etc/aiinfra-app/app.env")
        for name in APP_HOSTS
    }


def test_rollback_returns_every_host_to_the_previous_release(api_key: str, original: dict[str, str]) -> None:
    with Load(api_key, PAUSE).running() as load:
        res = playbook("rollback.yml")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert load.results["failed"] == 0, failed_requests(load)
    assert versions() == original
    assert env_releases() == original


def test_slow_canary_is_rejected_and_rolled_back(api_key: str, original: dict[str, str]) -> None:
    """A release that answers in 1.5 s gets 30% of the traffic for 45 s; Prometheus's p99 rejects it."""
    wheel = build_wheel("0.1.3", slow=True)
    canary = next(iter(APP_HOSTS))
    with Load(api_key, PAUSE).running() as load:
        res = playbook("canary.yml", "-e", f"app_wheel={wheel}", "-e", "canary_weight=30", "-e", "canary_window=45")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-4000:]
    assert re.search(rf"Canary rejected on {canary}: p99 latency [0-9.]+ s > canary_max_p99_seconds=0.5", out), out[
        -4000:
    ]
    assert load.results["failed"] == 0, failed_requests(load)
    assert versions() == original
    assert env_releases() == original
    for name in APP_HOSTS:  # removed from the canary; never sent to the others
        assert not host(name).file("/opt/aiinfra-app/releases/0.1.3").exists, name
    assert " weight=" not in host(PROXY_HOST).file("/etc/nginx/nginx.conf").content_string


BAD_RELEASE_INPUTS = [
    ("deploy.yml", ("-e", "deploy_serial=100%"), "would leave nginx no host"),
    ("deploy.yml", ("-e", "deploy_serial=0"), "is not a host count of at least 1"),
    ("deploy.yml", ("-e", "deploy_serial=150%"), "is over 100%"),
    ("deploy.yml", ("-e", "app_version=9.9.9"), "app_version 9.9.9 does not exist"),
    ("canary.yml", ("-e", "canary_weight=80"), "canary_weight=80 is out of range"),
    ("canary.yml", ("-e", "canary_weight=0"), "canary_weight=0 is out of range"),
]


def current_releases() -> dict[str, str | None]:
    return {name: host(name).file("/opt/aiinfra-app/current").linked_to for name in APP_HOSTS}


@pytest.fixture(scope="module")
def refusals() -> tuple[dict[str, str | None], dict[str, subprocess.CompletedProcess[str]]]:
    """Each bad input's run, all at once (each one only checks and refuses), and the
    releases before them. One after the other they took 14 to 24 s each, 107 s in all
    (a clean clone's lab stage, 2026-11-28); all at once, 28 s on the idle lab."""
    before = current_releases()
    with concurrent.futures.ThreadPoolExecutor(len(BAD_RELEASE_INPUTS)) as pool:
        runs = {message: pool.submit(playbook, book, *extra) for book, extra, message in BAD_RELEASE_INPUTS}
        return before, {message: run.result() for message, run in runs.items()}


@pytest.mark.parametrize("message", [message for _, _, message in BAD_RELEASE_INPUTS])
def test_bad_release_input_is_refused_before_any_host_changes(
    refusals: tuple[dict[str, str | None], dict[str, subprocess.CompletedProcess[str]]], message: str
) -> None:
    before, runs = refusals
    res = runs[message]
    assert res.returncode != 0
    assert message in " ".join(res.stdout.split()), res.stdout[-3000:]
    assert "changed=0" in res.stdout and not re.search(r"changed=[1-9]", res.stdout), res.stdout[-3000:]
    assert current_releases() == before
