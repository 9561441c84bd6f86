"""Real processes on loopback: uvicorn API and the worker, with SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import httpx

from .conftest import API_KEY, ENV_FILE, free_port


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "APP_ENV_FILE": str(ENV_FILE),
        "APP_API_KEYS": API_KEY,
        "APP_RELEASE": "proc-release",
        "APP_WORKER_METRICS_PORT": "0",
        **extra,
    }


async def _get_twice_on_one_connection(port: int, idle: float) -> list[bytes]:
    """Status lines of two GET /health on one keep-alive connection, `idle` seconds apart."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses = []
    try:
        for pause in (0.0, idle):
            await asyncio.sleep(pause)
            writer.write(b"GET /health HTTP/1.1\r\nHost: keepalive\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(
                next(
                    ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")
                ).split(b":")[1]
            )
            await reader.readexactly(length)
            statuses.append(head.split(b"\r\n")[0])
    except (asyncio.IncompleteReadError, ConnectionError) as err:
        statuses.append(repr(err).encode())  # the app closed the idle connection
    finally:
        writer.close()
    return statuses


async def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(proc.wait, 20)


async def test_uvicorn_serves_and_shuts_down_gracefully(migrated: None) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiinfra_app"],
        env=_env(APP_PORT=str(port), APP_HOST="127.0.0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            for _ in range(100):
                try:
                    if (await c.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            r = await c.get("/api/version", headers={"X-Request-ID": "proc-rid-1"})
            assert r.json()["release"] == "proc-release"
            assert r.headers["x-request-id"] == "proc-rid-1"
            assert (await c.get("/ready")).status_code == 200
        # An idle keep-alive connection outlives uvicorn's default of 5 s (the
        # app keeps it APP_KEEPALIVE_TIMEOUT, above nginx's upstream timeout).
        assert await _get_twice_on_one_connection(port, idle=6.5) == [b"HTTP/1.1 200 OK"] * 2
    finally:
        code = await _stop(proc)
    out = proc.stdout.read().decode() if proc.stdout else ""
    # uvicorn re-raises SIGTERM after a clean shutdown (systemd counts that as success)
    assert code in (0, -signal.SIGTERM), out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(
        ln.get("request_id") == "proc-rid-1" and ln.get("route") == "/api/version" for ln in lines
    ), out
    assert any(ln["msg"] == "shutting down: closing connections" for ln in lines)
    assert any(ln["msg"] == "Application shutdown complete." for ln in lines)


async def test_worker_process_starts_and_stops(migrated: None) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiinfra_app.worker"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    line = ""
    try:
        for _ in range(50):
            line = (await asyncio.to_thread(proc.stdout.readline)).decode()
            if "worker consuming" in line or not line:
                break
        assert "worker consuming" in line
    finally:
        code = await _stop(proc)
    rest = proc.stdout.read().decode()
    assert code == 0, rest
    assert "worker stopped" in rest
