"""Elasticsearch backend: runs only when APP_TEST_ES_URL points at a reachable cluster."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from aiinfra_app.settings import Settings
from aiinfra_app.worker import Worker

from .conftest import eventually, make_settings, unique


@pytest.fixture
async def es_settings(migrated: None) -> Settings:
    url = os.environ.get("APP_TEST_ES_URL", "")
    if not url:
        pytest.skip("no Elasticsearch reachable: APP_TEST_ES_URL is not set")
    try:
        async with httpx.AsyncClient(timeout=3) as c:
            (await c.get(url.rstrip("/") + "/_cluster/health")).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.skip(f"no Elasticsearch reachable at {url}: {exc!r}")
    return make_settings(
        es_url=url, es_index=unique("aiinfra-test-"), task_queue=unique("tasks.index.es.")
    )


@pytest.fixture
async def es_worker(es_settings: Settings) -> AsyncIterator[Worker]:
    w = Worker(es_settings, refresh="wait_for")
    task = asyncio.create_task(w.run())
    await asyncio.wait_for(w.ready.wait(), 30)
    yield w
    w.stop()
    await asyncio.wait_for(task, 30)
    async with httpx.AsyncClient() as c:
        await c.delete(f"{es_settings.es_url}/{es_settings.es_index}")


async def test_es_index_search_facets(
    es_settings: Settings,
    es_worker: Worker,
    app_client_with: Callable[[Settings], Awaitable[httpx.AsyncClient]],
    auth: dict[str, str],
) -> None:
    client = await app_client_with(es_settings)
    word = unique("narwhal")
    r = await client.post(
        "/api/documents",
        json={"title": f"{word} tusk", "tags": ["sea"], "source": "es-test"},
        headers=auth,
    )
    doc_id = r.json()["id"]

    async def found() -> bool:
        res = (await client.get("/api/search", params={"q": word})).json()
        return bool(res["total"] == 1)

    await eventually(found, within=30)
    res = (await client.get("/api/search", params={"q": word})).json()
    assert res["backend"] == "elasticsearch"
    assert res["hits"][0]["id"] == doc_id
    assert {"value": "sea", "count": 1} in res["facets"]["tags"]
    ready = (await client.get("/ready")).json()
    assert ready["checks"]["search:elasticsearch"]["ok"] is True
    await client.delete(f"/api/documents/{doc_id}", headers=auth)
