"""Dependency failures: a second app instance pointed at closed loopback ports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from aiinfra_app.settings import Settings

from .conftest import closed_port, make_settings, metric_value

Factory = Callable[[Settings], Awaitable[httpx.AsyncClient]]


async def test_redis_down_reads_still_work_and_ready_fails(
    client: httpx.AsyncClient, auth: dict[str, str], app_client_with: Factory
) -> None:
    r = await client.post("/api/documents", json={"title": "survives redis"}, headers=auth)
    doc_id = r.json()["id"]

    broken = await app_client_with(
        make_settings(redis_url=f"redis://:pw@127.0.0.1:{closed_port()}/0")
    )
    errors0 = metric_value((await broken.get("/metrics")).text, "app_cache_errors_total")
    for _ in range(2):
        r = await broken.get(f"/api/documents/{doc_id}")
        assert r.status_code == 200, r.text
        assert r.json()["title"] == "survives redis"
        assert r.headers["x-cache"] == "miss"
    # writes still work too (cache invalidation errors are swallowed)
    r = await broken.patch(f"/api/documents/{doc_id}", json={"title": "still"}, headers=auth)
    assert r.status_code == 200
    assert metric_value((await broken.get("/metrics")).text, "app_cache_errors_total") > errors0

    r = await broken.get("/ready")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["redis"]["ok"] is False
    assert checks["redis"]["error"]
    assert checks["postgres"]["ok"] and checks["rabbitmq"]["ok"]
    assert checks["search:postgres"]["ok"]
    assert (await broken.get("/health")).status_code == 200

    # redis optional -> ready again, still reported by name
    optional = await app_client_with(
        make_settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0", redis_required=False)
    )
    r = await optional.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"]["redis"]["ok"] is False
    await client.delete(f"/api/documents/{doc_id}", headers=auth)


async def test_rabbitmq_down_create_refused_cleanly(
    client: httpx.AsyncClient, auth: dict[str, str], app_client_with: Factory
) -> None:
    broken = await app_client_with(
        make_settings(amqp_url=f"amqp://u:p@127.0.0.1:{closed_port()}/", amqp_publish_timeout=1.0)
    )
    failures0 = metric_value((await broken.get("/metrics")).text, "app_publish_failures_total")
    title = "never stored " + closed_port().__str__()
    r = await broken.post("/api/documents", json={"title": title}, headers=auth)
    assert r.status_code == 503
    assert metric_value((await broken.get("/metrics")).text, "app_publish_failures_total") > (
        failures0
    )
    # compensated: nothing half-created
    listing = (await client.get("/api/documents", params={"size": 100})).json()
    assert title not in [d["title"] for d in listing["items"]]

    r = await broken.get("/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["rabbitmq"]["ok"] is False
    # reads keep working
    assert (await broken.get("/api/documents")).status_code == 200
