from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel

from aiinfra_app.settings import Settings


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[AbstractChannel]:
    conn = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    try:
        yield await conn.channel()
    finally:
        await conn.close()


async def _next_json(queue: aio_pika.abc.AbstractQueue) -> object:
    async with asyncio.timeout(10):
        while True:
            msg = await queue.get(no_ack=True, fail=False)
            if msg is not None:
                return json.loads(msg.body)
            await asyncio.sleep(0.05)


async def test_events_arrive_on_topic_exchange(
    client: httpx.AsyncClient, auth: dict[str, str], channel: AbstractChannel, settings: Settings
) -> None:
    exchange = await channel.get_exchange(settings.events_exchange, ensure=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="document.*")

    r = await client.post("/api/documents", json={"title": "evented"}, headers=auth)
    assert r.status_code == 201
    doc_id = r.json()["id"]
    wanted = {("document.created", doc_id)}
    await client.patch(f"/api/documents/{doc_id}", json={"body": "b"}, headers=auth)
    await client.delete(f"/api/documents/{doc_id}", headers=auth)
    wanted |= {("document.updated", doc_id), ("document.deleted", doc_id)}

    got: set[tuple[str, str]] = set()
    async with asyncio.timeout(10):
        while not wanted <= got:
            event = await _next_json(queue)
            assert isinstance(event, dict)
            got.add((event["event"], event["id"]))
    assert wanted <= got


async def test_task_queue_is_durable_with_dead_letter(
    channel: AbstractChannel, settings: Settings, client: httpx.AsyncClient, worker: object
) -> None:
    # passive declare succeeds only if the app/worker declared them
    await channel.declare_queue(settings.task_queue, passive=True)
    dead = await channel.declare_queue(settings.dead_letter_queue, passive=True)
    # a malformed task is dead-lettered by the worker, not lost or retried forever
    marker = uuid.uuid4().hex
    await channel.default_exchange.publish(
        aio_pika.Message(body=json.dumps({"garbage": marker}).encode()),
        routing_key=settings.task_queue,
    )
    async with asyncio.timeout(10):
        while True:
            msg = await dead.get(no_ack=True, fail=False)
            if msg is not None and marker.encode() in msg.body:
                break
            if msg is None:
                await asyncio.sleep(0.05)
