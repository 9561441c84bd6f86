"""Cache-aside helper over Redis. Every Redis error is logged and counted, never raised."""

from __future__ import annotations

import logging
from uuid import UUID

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .db import document_from_json, document_to_json
from .metrics import CACHE_ERRORS, CACHE_HITS, CACHE_MISSES
from .models import Document
from .settings import Settings

log = logging.getLogger("aiinfra_app.cache")


def create_redis(settings: Settings) -> aioredis.Redis | None:
    if settings.redis_url is None:
        return None
    return aioredis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=settings.redis_pool_max,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )


class DocumentCache:
    def __init__(self, client: aioredis.Redis | None, ttl: int) -> None:
        self.client = client
        self.ttl = ttl

    @staticmethod
    def key(doc_id: UUID) -> str:
        return f"doc:{doc_id}"

    async def get(self, doc_id: UUID) -> Document | None:
        if self.client is None:
            CACHE_MISSES.inc()
            return None
        try:
            raw = await self.client.get(self.key(doc_id))
        except Exception as exc:
            CACHE_ERRORS.labels(op="get").inc()
            CACHE_MISSES.inc()
            log.warning("cache get failed", extra={"error": repr(exc), "doc_id": str(doc_id)})
            return None
        if raw is None:
            CACHE_MISSES.inc()
            return None
        try:
            doc = document_from_json(raw)
        except ValueError:
            CACHE_ERRORS.labels(op="decode").inc()
            CACHE_MISSES.inc()
            return None
        CACHE_HITS.inc()
        return doc

    async def set(self, doc: Document) -> None:
        if self.client is None:
            return
        try:
            await self.client.set(self.key(doc.id), document_to_json(doc), ex=self.ttl)
        except Exception as exc:
            CACHE_ERRORS.labels(op="set").inc()
            log.warning("cache set failed", extra={"error": repr(exc), "doc_id": str(doc.id)})

    async def invalidate(self, doc_id: UUID) -> None:
        if self.client is None:
            return
        try:
            await self.client.delete(self.key(doc_id))
        except Exception as exc:
            CACHE_ERRORS.labels(op="delete").inc()
            log.warning(
                "cache invalidate failed", extra={"error": repr(exc), "doc_id": str(doc_id)}
            )
