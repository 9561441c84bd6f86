"""Index worker: consumes the task queue and writes documents into the search backend.

Run as ``aiinfra-worker`` (or ``python -m aiinfra_app.worker``). ``--reindex``
enqueues an index task for every document whose index is behind its version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from typing import Any
from uuid import UUID

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client import start_http_server

from .cache import DocumentCache, create_redis
from .db import DocumentRepo, create_pool
from .logging_setup import setup_logging
from .messaging import Messaging, declare_topology
from .metrics import WORKER_LAG, WORKER_LAST_LAG, WORKER_PROCESSED
from .search import SearchBackend, create_search
from .settings import Settings, load_settings

log = logging.getLogger("aiinfra_app.worker")


class Worker:
    def __init__(self, settings: Settings, refresh: str = "false") -> None:
        self.settings = settings
        self.refresh = refresh
        self.pool: asyncpg.Pool | None = None
        self.search: SearchBackend | None = None
        self.connection: AbstractRobustConnection | None = None
        self.cache: DocumentCache | None = None
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        assert self.pool is not None and self.search is not None
        try:
            task: dict[str, Any] = json.loads(message.body)
            op = str(task["op"])
            doc_id = UUID(str(task["id"]))
            enqueued_at = float(task.get("enqueued_at", time.time()))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("malformed task, dead-lettering", extra={"error": repr(exc)})
            WORKER_PROCESSED.labels(op="unknown", outcome="malformed").inc()
            await message.reject(requeue=False)
            return
        try:
            outcome = "ok"
            if op == "index":
                doc = await DocumentRepo(self.pool).get(doc_id)
                if doc is None:
                    outcome = "missing"  # deleted meanwhile; the delete task cleans up
                else:
                    await self.search.index(doc)
                    if self.cache is not None:  # cached copy has a stale "indexed" flag
                        await self.cache.invalidate(doc_id)
            elif op == "delete":
                await self.search.delete(doc_id)
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception:
            log.exception("task failed", extra={"op": op, "doc_id": str(doc_id)})
            WORKER_PROCESSED.labels(op=op, outcome="error").inc()
            # First failure: retry once via requeue; then dead-letter.
            await message.nack(requeue=not message.redelivered)
            return
        await message.ack()
        lag = max(0.0, time.time() - enqueued_at)
        WORKER_LAG.observe(lag)
        WORKER_LAST_LAG.set(lag)
        WORKER_PROCESSED.labels(op=op, outcome=outcome).inc()
        log.info(
            "task done",
            extra={"op": op, "doc_id": str(doc_id), "outcome": outcome, "lag_s": round(lag, 3)},
        )

    async def run(self) -> None:
        cfg = self.settings
        self.pool = await create_pool(cfg)
        self.search = create_search(cfg, self.pool, refresh=self.refresh)
        redis = create_redis(cfg)
        self.cache = DocumentCache(redis, cfg.cache_ttl)
        try:
            await self.search.setup()
            self.connection = await aio_pika.connect_robust(
                cfg.amqp_url.get_secret_value(),
                client_properties={"connection_name": "aiinfra-app-worker"},
            )
            channel = await self.connection.channel()
            await channel.set_qos(prefetch_count=cfg.worker_prefetch)
            _, queue = await declare_topology(channel, cfg)
            tag = await queue.consume(self.handle)
            log.info(
                "worker consuming", extra={"queue": cfg.task_queue, "backend": self.search.name}
            )
            self.ready.set()
            await self._stop.wait()
            log.info("worker stopping")
            await queue.cancel(tag)
        finally:
            if self.connection is not None:
                await self.connection.close()
            await self.search.close()
            if redis is not None:
                await redis.aclose()
            await self.pool.close()
            log.info("worker stopped")


async def reindex(settings: Settings) -> int:
    """Enqueue index tasks for documents whose index lags their version."""
    pool = await create_pool(settings)
    messaging = Messaging(settings)
    try:
        rows = await pool.fetch(
            "SELECT id FROM documents WHERE indexed_version IS DISTINCT FROM version"
        )
        for r in rows:
            await messaging.enqueue_index("index", str(r["id"]))
        return len(rows)
    finally:
        await messaging.close()
        await pool.close()


async def _main(settings: Settings) -> None:
    worker = Worker(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aiinfra-worker", description=__doc__)
    parser.add_argument("--env-file", help="env file with APP_* settings")
    parser.add_argument("--reindex", action="store_true", help="enqueue stale documents and exit")
    args = parser.parse_args(argv)
    settings = load_settings(args.env_file)
    setup_logging(settings.log_level, settings.log_format)
    if args.reindex:
        n = asyncio.run(reindex(settings))
        log.info("reindex enqueued", extra={"count": n})
        return
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(settings))
    sys.exit(0)


if __name__ == "__main__":
    main()
