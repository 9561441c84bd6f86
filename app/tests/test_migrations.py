from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from aiinfra_app.migrate import MigrationError, apply_migrations, load_migrations
from aiinfra_app.settings import Settings

from .conftest import ENV_FILE, unique


@pytest.fixture
async def fresh_db(settings: Settings) -> AsyncIterator[str]:
    """A throwaway database (the test user has CREATEDB); dropped afterwards."""
    base = settings.database_url.get_secret_value()
    name = unique("aiinfra_mig_")
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_migrations_apply_once_and_are_idempotent(fresh_db: str) -> None:
    expected = [m.name for m in load_migrations()]
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await apply_migrations(conn) == expected
        assert await apply_migrations(conn) == []
        rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")
        assert [r["name"] for r in rows] == expected
        cols = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name='documents'"
            )
        }
        assert {"search_vector", "indexed_version", "tags", "source"} <= cols
    finally:
        await conn.close()


async def test_concurrent_runs_serialised_by_advisory_lock(fresh_db: str) -> None:
    conns = [await asyncpg.connect(fresh_db) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        applied = [name for r in results for name in r]
        assert sorted(applied) == sorted(m.name for m in load_migrations())
    finally:
        for c in conns:
            await c.close()


async def test_changed_migration_detected(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        await apply_migrations(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn)
    finally:
        await conn.close()


async def test_cli_check_and_apply(fresh_db: str) -> None:
    env = {**os.environ, "APP_DATABASE_URL": fresh_db, "APP_ENV_FILE": "/nonexistent"}
    cmd = [sys.executable, "-m", "aiinfra_app.migrate"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60)

    check = await asyncio.to_thread(run, "--check")
    assert check.returncode == 1 and "pending: 0001_documents.sql" in check.stdout
    first = await asyncio.to_thread(run)
    assert first.returncode == 0, first.stderr
    assert await asyncio.to_thread(lambda: run("--check").returncode) == 0
    assert await asyncio.to_thread(lambda: run().returncode) == 0
    assert ENV_FILE.is_file()
