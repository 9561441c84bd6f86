"""Rolling releases under load: playbooks/deploy.yml and rollback.yml lose no request.

A load generator sends reads and writes through nginx the whole time each
playbook runs; every answer must be a success. Releases are real wheels built
from a copy of app/ with another version (and, for the failing case, code that
cannot start). Runs after test_app.py and test_browser.py (file order): it
leaves both hosts on the release the scenario converged.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import testinfra
from infra.app import SCENARIO_DIR, https, scenario_secret
from infra.playbook import REPO, ansible_env

PROXY = "172.29.24.10"
BASE = f"https://{PROXY}"
APP_HOSTS = {"app-app1": "172.29.24.11", "app-app2": "172.29.24.12"}


def _host(name: str) -> Any:
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=str(SCENARIO_DIR / "inventory"))


def build_wheel(version: str, broken: bool = False) -> Path:
    """A wheel of the app at `version`; `broken` makes the API fail at import."""
    src = SCENARIO_DIR / f"app-src-{version}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(REPO / "app", src, ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "build"))
    pyproject = src / "pyproject.toml"
    pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text(), count=1))
    if broken:
        main = src / "src" / "aiinfra_app" / "main.py"
        main.write_text('raise RuntimeError("this release cannot start")\n' + main.read_text())
    out = SCENARIO_DIR / "wheels"
    out.mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(src)],
        check=True,
        timeout=600,
    )
    return out / f"aiinfra_app-{version}-py3-none-any.whl"


def playbook(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(Path(SCENARIO_DIR) / "inventory"),
            str(REPO / "playbooks" / name),
            *args,
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def versions() -> dict[str, str]:
    """The version each app host answers, asked through nginx until both answered."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(seen) < len(APP_HOSTS) and time.monotonic() < deadline:
        status, _, raw = https("GET", f"{BASE}/api/version")
        assert status == 200, raw
        info = json.loads(raw)
        seen[info["hostname"]] = info["version"]
    return seen


class Load:
    """Reads and writes through nginx from several threads; counts every answer."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.results: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        status, _, raw = https(
            "POST", f"{BASE}/api/documents", {"title": "deploy load", "body": "read me"}, {"X-API-Key": api_key}
        )
        assert status == 201, raw
        self.doc_id = json.loads(raw)["id"]

    def _one(self, i: int) -> None:
        try:
            if i % 5 == 0:
                status, _, raw = https(
                    "POST",
                    f"{BASE}/api/documents",
                    {"title": f"deploy {uuid.uuid4().hex[:8]}", "body": "written during a rollout"},
                    {"X-API-Key": self.api_key},
                )
                ok = status == 201
            else:
                status, _, raw = https("GET", f"{BASE}/api/documents/{self.doc_id}")
                ok = status == 200
        except OSError as err:  # connection refused/reset, timeouts
            ok, status, raw = False, 0, str(err).encode()
        with self._lock:
            self.results["ok" if ok else "failed"] += 1
            if not ok and len(self.errors) < 10:
                self.errors.append(f"{status}: {raw[:200]!r}")

    def _worker(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set():
            self._one(i)
            i += 1
            time.sleep(0.02)

    @contextmanager
    def running(self, threads: int = 4) -> Iterator[Load]:
        workers = [threading.Thread(target=self._worker, args=(n,), daemon=True) for n in range(threads)]
        for w in workers:
            w.start()
        try:
            yield self
        finally:
            self._stop.set()
            for w in workers:
                w.join(timeout=30)


@pytest.fixture(scope="module")
def api_key() -> str:
    return scenario_secret("app_api_key")


@pytest.fixture(scope="module")
def original() -> dict[str, str]:
    before = versions()
    assert len(set(before.values())) == 1, before
    return before


def test_deploy_under_load_loses_no_request(api_key: str, original: dict[str, str]) -> None:
    wheel = build_wheel("0.1.1")
    with Load(api_key).running() as load:
        res = playbook("deploy.yml", "-e", f"app_wheel={wheel}")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert load.results["failed"] == 0, load.errors
    assert load.results["ok"] > 50, load.results
    assert set(versions().values()) == {"0.1.1"}


def test_failing_release_is_rolled_back_and_stops_the_rollout(api_key: str) -> None:
    wheel = build_wheel("0.1.2", broken=True)
    with Load(api_key).running() as load:
        res = playbook("deploy.yml", "-e", f"app_wheel={wheel}", "-e", "app_ready_timeout=20")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-4000:]
    # The first host failed at the restart, went back, and the second was never touched.
    assert re.search(r"app-app1 failed at step \"install and switch to the new release\"", out), out[-4000:]
    assert "Rolled back to 0.1.1" in out, out[-4000:]
    for name in APP_HOSTS:  # the failed release was removed; app-app2 never got it
        assert not _host(name).file("/opt/aiinfra-app/releases/0.1.2").exists, name
    assert load.results["failed"] == 0, load.errors
    assert set(versions().values()) == {"0.1.1"}


def test_rollback_returns_every_host_to_the_previous_release(api_key: str, original: dict[str, str]) -> None:
    with Load(api_key).running() as load:
        res = playbook("rollback.yml")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert load.results["failed"] == 0, load.errors
    assert versions() == original


def test_deploy_refuses_a_batch_that_empties_the_upstream() -> None:
    res = playbook("deploy.yml", "-e", "deploy_serial=100%")
    assert res.returncode != 0
    assert "would leave nginx no host" in res.stdout, res.stdout[-3000:]
