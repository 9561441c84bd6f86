"""Releases of the app for the lab's deploy checks and the deploy bench: wheels built
from a copy of app/ at another version (optionally one that cannot start, or one
that answers slowly), a load generator through nginx that counts every answer and
its latency, and the version each app host serves."""

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

from infra.lab import address, group, https, proxy_base
from infra.playbook import REPO

BASE = proxy_base()
PROXY_HOST = group("proxy")[0]
APP_HOSTS = {name: address(name) for name in group("app")}
# Wheels built by the tests (git-ignored, rebuilt each run).
BUILD_DIR = REPO / ".cache" / "lab-releases"


# Appended to main.py for a release that works but answers its API slowly: the
# delay is in the router, inside the middleware that times requests, so the
# app's own latency histogram (what Prometheus judges a canary by) shows it.
SLOW_RELEASE = """

_fast_router_call = type(app.router).__call__


async def _slow_router_call(self, scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "http" and scope["path"].startswith("/api/"):
        await __import__("asyncio").sleep(1.5)
    await _fast_router_call(self, scope, receive, send)


type(app.router).__call__ = _slow_router_call
"""


def build_wheel(version: str, broken: bool = False, slow: bool = False) -> Path:
    """A wheel of the app at `version`; `broken` makes the API fail at import, `slow` answers in 1.5 s."""
    src = BUILD_DIR / f"app-src-{version}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(REPO / "app", src, ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "build"))
    pyproject = src / "pyproject.toml"
    pyproject.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text(), count=1))
    if broken:
        main = src / "src" / "aiinfra_app" / "main.py"
        main.write_text('raise RuntimeError("this release cannot start")\n' + main.read_text())
    if slow:
        main = src / "src" / "aiinfra_app" / "main.py"
        main.write_text(main.read_text() + SLOW_RELEASE)
    out = BUILD_DIR / "wheels"
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(src)],
        check=True,
        timeout=600,
    )
    return out / f"aiinfra_app-{version}-py3-none-any.whl"


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
    """Reads and writes through nginx from several threads; counts every answer and times it.

    Each thread waits `pause` seconds between requests. On the idle lab (30 s
    each, 2026-11-28) 4 threads with the default 0.1 s sent 35 requests a
    second (one every ~30 ms during a switch) with 0.62 of the machine's 2
    cores busy; with 0.02 s, 98 a second and 1.45 cores (client, TLS, nginx,
    app, PostgreSQL), which slowed the rollouts under test and everything
    running beside them.
    """

    def __init__(self, api_key: str, pause: float = 0.1) -> None:
        self.api_key = api_key
        self.pause = pause
        self.results: Counter[str] = Counter()
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        status, _, raw = https(
            "POST", f"{BASE}/api/documents", {"title": "deploy load", "body": "read me"}, {"X-API-Key": api_key}
        )
        assert status == 201, raw
        self.doc_id = json.loads(raw)["id"]

    def _one(self, i: int) -> None:
        start = time.perf_counter()
        method = "POST" if i % 5 == 0 else "GET"
        try:
            if method == "POST":
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
            self.latencies.append(time.perf_counter() - start)
            self.results["ok" if ok else "failed"] += 1
            if not ok and len(self.errors) < 10:
                self.errors.append(f"{method} {time.strftime('%H:%M:%S')} {status}: {raw[:200]!r}")

    def _worker(self, offset: int) -> None:
        i = offset
        while not self._stop.is_set():
            self._one(i)
            i += 1
            time.sleep(self.pause)

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

    def p99(self) -> float:
        """99th percentile latency in seconds of every request so far."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
