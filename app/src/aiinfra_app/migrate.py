"""Schema migrations: ordered SQL files, each applied in its own transaction.

A ``schema_migrations`` table records what ran (with a checksum) and a
PostgreSQL advisory lock serialises concurrent runs, so a deploy may run
``aiinfra-migrate`` from several hosts and it still applies each file once.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import re
import sys
from dataclasses import dataclass
from importlib import resources

import asyncpg

from .logging_setup import setup_logging
from .settings import load_settings

log = logging.getLogger("aiinfra_app.migrate")

ADVISORY_LOCK_KEY = 7_391_004_211  # arbitrary, stable
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("aiinfra_app.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations on ``conn``; return the names applied."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        done = {r["version"]: r for r in rows}
        for mig in load_migrations():
            prev = done.get(mig.version)
            if prev is not None:
                if prev["checksum"] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.name} changed after it was applied "
                        f"(recorded {prev['checksum'][:12]}, file {mig.checksum[:12]})"
                    )
                continue
            log.info("applying migration", extra={"migration": mig.name})
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            applied_now.append(mig.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    return applied_now


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done: set[int] = set()
    if exists:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.name for m in load_migrations() if m.version not in done]


async def run(database_url: str, check_only: bool = False) -> int:
    conn = await asyncpg.connect(database_url, timeout=30)
    try:
        if check_only:
            pending = await pending_migrations(conn)
            for name in pending:
                print(f"pending: {name}")
            return 1 if pending else 0
        applied = await apply_migrations(conn)
        log.info("migrations complete", extra={"applied": applied})
        return 0
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aiinfra-migrate", description=__doc__)
    parser.add_argument("--env-file", help="env file with APP_* settings")
    parser.add_argument(
        "--check", action="store_true", help="list pending migrations; exit 1 if any are pending"
    )
    args = parser.parse_args(argv)
    settings = load_settings(args.env_file)
    setup_logging(settings.log_level, settings.log_format)
    try:
        code = asyncio.run(run(settings.database_url.get_secret_value(), args.check))
    except MigrationError as exc:
        log.error("migration failed: %s", exc)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
