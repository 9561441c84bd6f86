from __future__ import annotations

import httpx

from .conftest import metric_value, unique


async def _create(
    client: httpx.AsyncClient, auth: dict[str, str], **kw: object
) -> dict[str, object]:
    payload: dict[str, object] = {"title": "A title", "body": "some body", "tags": ["x"]}
    payload.update(kw)
    r = await client.post("/api/documents", json=payload, headers=auth)
    assert r.status_code == 201, r.text
    doc: dict[str, object] = r.json()
    assert r.headers["location"] == f"/api/documents/{doc['id']}"
    return doc


async def test_create_read_cache_hit_visible_in_metrics(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    doc = await _create(client, auth, title="cache me", source="unit")
    before = (await client.get("/metrics")).text
    hits0 = metric_value(before, "app_cache_hits_total")
    misses0 = metric_value(before, "app_cache_misses_total")

    r1 = await client.get(f"/api/documents/{doc['id']}")
    assert r1.status_code == 200
    assert r1.headers["x-cache"] == "miss"
    r2 = await client.get(f"/api/documents/{doc['id']}")
    assert r2.status_code == 200
    assert r2.headers["x-cache"] == "hit"
    assert r1.json()["title"] == r2.json()["title"] == "cache me"

    after = (await client.get("/metrics")).text
    assert metric_value(after, "app_cache_hits_total") >= hits0 + 1
    assert metric_value(after, "app_cache_misses_total") >= misses0 + 1
    await client.delete(f"/api/documents/{doc['id']}", headers=auth)


async def test_put_and_patch_invalidate_cache(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    doc = await _create(client, auth, title="v1")
    url = f"/api/documents/{doc['id']}"
    await client.get(url)
    assert (await client.get(url)).headers["x-cache"] == "hit"

    r = await client.put(url, json={"title": "v2", "body": "b", "tags": ["y"]}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    r = await client.get(url)
    assert r.headers["x-cache"] == "miss"
    assert r.json()["title"] == "v2"
    assert r.json()["tags"] == ["y"]

    r = await client.patch(url, json={"title": "v3"}, headers=auth)
    assert r.status_code == 200
    r = await client.get(url)
    assert r.headers["x-cache"] == "miss"
    assert r.json()["title"] == "v3"
    assert r.json()["body"] == "b"
    assert r.json()["version"] == 3
    await client.delete(url, headers=auth)


async def test_delete(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    doc = await _create(client, auth)
    url = f"/api/documents/{doc['id']}"
    assert (await client.get(url)).status_code == 200  # now cached
    r = await client.delete(url, headers=auth)
    assert r.status_code == 204
    assert (await client.get(url)).status_code == 404
    assert (await client.delete(url, headers=auth)).status_code == 404
    assert (await client.put(url, json={"title": "z"}, headers=auth)).status_code == 404


async def test_list_pagination_and_filters(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    tag = unique("tag")
    ids = []
    for i in range(5):
        ids.append((await _create(client, auth, title=f"page {i}", tags=[tag]))["id"])
    seen: list[object] = []
    for page, expected in ((1, 2), (2, 2), (3, 1), (4, 0)):
        r = await client.get("/api/documents", params={"tag": tag, "page": page, "size": 2})
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == 5
        assert body["page"] == page
        assert len(body["items"]) == expected
        seen += [item["id"] for item in body["items"]]
    assert sorted(map(str, seen)) == sorted(map(str, ids))
    # newest first
    r = await client.get("/api/documents", params={"tag": tag, "size": 5})
    assert [d["title"] for d in r.json()["items"]] == [f"page {i}" for i in range(4, -1, -1)]
    for doc_id in ids:
        await client.delete(f"/api/documents/{doc_id}", headers=auth)
