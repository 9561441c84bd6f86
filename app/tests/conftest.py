"""Fixtures: real PostgreSQL/Redis/RabbitMQ from scripts/test-services (no mocks)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from dotenv import dotenv_values

from aiinfra_app.main import create_app
from aiinfra_app.migrate import apply_migrations
from aiinfra_app.settings import Settings
from aiinfra_app.worker import Worker

ENV_FILE = Path(os.environ.get("APP_TEST_ENV_FILE", "/var/lib/aiinfra-test-services/app-test.env"))
API_KEY = "test-key-" + uuid.uuid4().hex[:8]


def _service_env() -> dict[str, str]:
    if not ENV_FILE.is_file():
        pytest.exit(
            f"{ENV_FILE} not found: run `scripts/test-services start` first "
            "(or set APP_TEST_ENV_FILE)",
            returncode=2,
        )
    return {k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}


SERVICE_ENV = _service_env()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": SERVICE_ENV["APP_DATABASE_URL"],
        "redis_url": SERVICE_ENV["APP_REDIS_URL"],
        "amqp_url": SERVICE_ENV["APP_AMQP_URL"],
        "api_keys": f"{API_KEY},second-key",
        "release": "test-release",
        "log_format": "text",
        "log_level": "WARNING",
        "max_body_bytes": 4096,
        "db_pool_min": 1,
        "db_pool_max": 5,
        "worker_metrics_port": 0,
        "ready_timeout": 2.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    return free_port()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
async def migrated(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()


AppClientFactory = Callable[[Settings], Any]


async def _start_app(cfg: Settings) -> tuple[Any, Any, httpx.AsyncClient]:
    app = create_app(cfg)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test")
    return app, lifespan, client


@pytest.fixture(scope="session")
async def client(settings: Settings, migrated: None) -> AsyncIterator[httpx.AsyncClient]:
    _, lifespan, c = await _start_app(settings)
    try:
        yield c
    finally:
        await c.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def app_client_with() -> AsyncIterator[Callable[[Settings], Awaitable[httpx.AsyncClient]]]:
    """Start extra app instances (e.g. pointed at a dead Redis); closed after the test."""
    started: list[tuple[Any, httpx.AsyncClient]] = []

    async def factory(cfg: Settings) -> httpx.AsyncClient:
        _, lifespan, c = await _start_app(cfg)
        started.append((lifespan, c))
        return c

    yield factory
    for lifespan, c in started:
        await c.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture(scope="session")
async def worker(settings: Settings, migrated: None) -> AsyncIterator[Worker]:
    w = Worker(settings, refresh="wait_for")
    task = asyncio.create_task(w.run())
    ready = asyncio.create_task(w.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raise the startup error
    assert ready in done, "worker did not start"
    try:
        yield w
    finally:
        w.stop()
        await asyncio.wait_for(task, 30)


@pytest.fixture
def auth() -> dict[str, str]:
    return {"X-API-Key": API_KEY}


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 15.0, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of samples named ``name`` whose labels include ``labels`` in Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                total += sample.value
    return total
