from __future__ import annotations

import httpx

from aiinfra_app import __version__


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_version(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/version")
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == __version__
    assert body["release"] == "test-release"
    assert body["search_backend"] == "postgres"


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/api/documents/{doc_id}" in spec["paths"]
    assert "/api/search" in spec["paths"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_request_id_honoured_and_generated(client: httpx.AsyncClient) -> None:
    r = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/health")
    assert len(r.headers["x-request-id"]) == 32
    # unsafe ids are replaced, not echoed
    r = await client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"


async def test_ready_names_each_dependency(client: httpx.AsyncClient) -> None:
    r = await client.get("/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"postgres", "redis", "rabbitmq", "search:postgres"}
    assert all(c["ok"] for c in body["checks"].values())


async def test_metrics_exposes_route_templates(client: httpx.AsyncClient) -> None:
    await client.get("/api/documents/00000000-0000-0000-0000-000000000000")
    text = (await client.get("/metrics")).text
    assert 'route="/api/documents/{doc_id}"' in text
    assert "app_http_request_duration_seconds_bucket" in text
    assert "app_cache_hits_total" in text
    assert "app_publish_failures_total" in text or "app_published_total" in text
