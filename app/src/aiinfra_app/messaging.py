"""RabbitMQ (aio-pika): topic exchange for events, durable task queue with a DLQ."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from .metrics import PUBLISH_FAILURES, PUBLISHED
from .settings import Settings

log = logging.getLogger("aiinfra_app.messaging")


class PublishError(RuntimeError):
    pass


async def declare_topology(
    channel: AbstractChannel, settings: Settings
) -> tuple[AbstractExchange, AbstractQueue]:
    """Declare the events exchange, the task queue and its dead-letter queue (idempotent)."""
    events = await channel.declare_exchange(
        settings.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dlx = await channel.declare_exchange(
        settings.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    queue_type: dict[str, Any] = {"x-queue-type": settings.queue_type}
    dead = await channel.declare_queue(
        settings.dead_letter_queue, durable=True, arguments=queue_type
    )
    await dead.bind(dlx, routing_key=settings.dead_letter_queue)
    tasks = await channel.declare_queue(
        settings.task_queue,
        durable=True,
        arguments={
            **queue_type,
            "x-dead-letter-exchange": settings.dead_letter_exchange,
            "x-dead-letter-routing-key": settings.dead_letter_queue,
        },
    )
    return events, tasks


class Messaging:
    """Publisher side used by the API: events and index tasks, with publisher confirms."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.events: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        async with self._lock:
            if self.channel is not None and not self.channel.is_closed:
                return
            if self.connection is None or self.connection.is_closed:
                self.connection = await aio_pika.connect_robust(
                    self.settings.amqp_url.get_secret_value(),
                    timeout=self.settings.amqp_publish_timeout,
                    client_properties={"connection_name": "aiinfra-app-api"},
                )
            self.channel = await self.connection.channel(publisher_confirms=True)
            self.events, _ = await declare_topology(self.channel, self.settings)

    async def close(self) -> None:
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()
        self.connection = None
        self.channel = None
        self.events = None

    async def _publish(
        self, kind: str, exchange_name: str, routing_key: str, payload: dict[str, Any]
    ) -> None:
        message = aio_pika.Message(
            body=json.dumps(payload, default=str).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            timestamp=datetime.now(UTC),
            type=kind,
        )
        try:
            await asyncio.wait_for(self.connect(), self.settings.amqp_publish_timeout)
            assert self.channel is not None and self.events is not None
            exchange = self.events if exchange_name else self.channel.default_exchange
            await exchange.publish(
                message,
                routing_key=routing_key,
                mandatory=True,
                timeout=self.settings.amqp_publish_timeout,
            )
        except Exception as exc:
            PUBLISH_FAILURES.labels(kind=kind).inc()
            log.error(
                "publish failed",
                extra={"kind": kind, "routing_key": routing_key, "error": repr(exc)},
            )
            raise PublishError(f"could not publish {kind}: {exc!r}") from exc
        PUBLISHED.labels(kind=kind).inc()

    async def publish_event(self, event: str, doc_id: str, version: int) -> None:
        await self._publish(
            "event",
            self.settings.events_exchange,
            event,
            {
                "event": event,
                "id": doc_id,
                "version": version,
                "occurred_at": datetime.now(UTC).isoformat(),
            },
        )

    async def enqueue_index(self, op: str, doc_id: str) -> None:
        await self._publish(
            "task",
            "",
            self.settings.task_queue,
            {"op": op, "id": doc_id, "enqueued_at": time.time()},
        )

    async def ping(self) -> None:
        """Round trip to the broker: passive declare of the events exchange on a new channel."""
        await self.connect()
        assert self.connection is not None
        channel = await self.connection.channel(publisher_confirms=False)
        try:
            await channel.get_exchange(self.settings.events_exchange, ensure=True)
        finally:
            await channel.close()
