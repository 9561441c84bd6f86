from __future__ import annotations

from typing import Any

import httpx

from aiinfra_app.worker import Worker

from .conftest import eventually, metric_value, unique


async def _create(client: httpx.AsyncClient, auth: dict[str, str], **doc: Any) -> str:
    r = await client.post("/api/documents", json=doc, headers=auth)
    assert r.status_code == 201, r.text
    doc_id: str = r.json()["id"]
    return doc_id


async def _search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/api/search", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_worker_indexes_and_search_finds(
    client: httpx.AsyncClient, auth: dict[str, str], worker: Worker
) -> None:
    word = unique("zebra")
    processed0 = metric_value((await client.get("/metrics")).text, "app_worker_processed_total")
    doc_id = await _create(
        client, auth, title=f"About {word}", body="stripes and savanna", tags=["animals"]
    )

    async def found() -> bool:
        return bool((await _search(client, q=word))["total"] == 1)

    await eventually(found)
    res = await _search(client, q=word)
    assert res["backend"] == "postgres"
    assert res["hits"][0]["id"] == doc_id
    assert res["hits"][0]["score"] > 0
    # the worker marked the document indexed (and dropped the stale cached copy)
    assert (await client.get(f"/api/documents/{doc_id}")).json()["indexed"] is True
    text = (await client.get("/metrics")).text
    assert metric_value(text, "app_worker_processed_total") > processed0
    assert metric_value(text, "app_worker_lag_seconds_count") >= 1

    # update re-indexes: the new word is found, the old one is not
    new_word = unique("okapi")
    r = await client.patch(
        f"/api/documents/{doc_id}", json={"title": f"About {new_word}"}, headers=auth
    )
    assert r.status_code == 200

    async def reindexed() -> bool:
        return bool((await _search(client, q=new_word))["total"] == 1)

    await eventually(reindexed)
    assert (await _search(client, q=word))["total"] == 0

    # delete removes it from search
    await client.delete(f"/api/documents/{doc_id}", headers=auth)
    assert (await _search(client, q=new_word))["total"] == 0


async def test_search_pagination_and_facets(
    client: httpx.AsyncClient, auth: dict[str, str], worker: Worker
) -> None:
    word = unique("quokka")
    src_a, src_b = unique("srcA"), unique("srcB")
    ids = []
    for i in range(5):
        tags = ["common", "even" if i % 2 == 0 else "odd"]
        src = src_a if i < 3 else src_b
        ids.append(
            await _create(client, auth, title=f"{word} number {i}", body="x", tags=tags, source=src)
        )

    async def all_found() -> bool:
        return bool((await _search(client, q=word))["total"] == 5)

    await eventually(all_found)
    seen: list[str] = []
    for page, expected in ((1, 2), (2, 2), (3, 1)):
        res = await _search(client, q=word, page=page, size=2)
        assert res["total"] == 5
        assert (res["page"], res["size"]) == (page, 2)
        assert len(res["hits"]) == expected
        seen += [h["id"] for h in res["hits"]]
    assert sorted(seen) == sorted(ids)

    res = await _search(client, q=word, size=1)
    tag_counts = {f["value"]: f["count"] for f in res["facets"]["tags"]}
    assert tag_counts == {"common": 5, "even": 3, "odd": 2}
    sources = {f["value"]: f["count"] for f in res["facets"]["source"]}
    assert sources == {src_a: 3, src_b: 2}
    assert res["facets"]["source"][0]["value"] == src_a  # ordered by count

    # facet filters narrow both hits and facets
    res = await _search(client, q=word, tag="odd")
    assert res["total"] == 2
    res = await _search(client, q=word, source=src_b)
    assert res["total"] == 2
    assert {f["value"] for f in res["facets"]["source"]} == {src_b}
    for doc_id in ids:
        await client.delete(f"/api/documents/{doc_id}", headers=auth)


async def test_search_syntax_never_500(client: httpx.AsyncClient) -> None:
    for q in ['"unbalanced', "a & | ! b", "(((", "-", "' OR 1=1 --", "ü∑®"]:
        r = await client.get("/api/search", params={"q": q})
        assert r.status_code == 200, (q, r.text)
