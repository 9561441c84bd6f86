from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

DOC = {"title": "t", "body": "b"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/documents"),
        ("PUT", "/api/documents/{id}"),
        ("PATCH", "/api/documents/{id}"),
        ("DELETE", "/api/documents/{id}"),
    ],
)
async def test_auth_refusals(client: httpx.AsyncClient, method: str, path: str) -> None:
    url = path.format(id=uuid.uuid4())
    body = None if method == "DELETE" else DOC
    r = await client.request(method, url, json=body)
    assert r.status_code == 401
    assert r.headers.get("www-authenticate") == "ApiKey"
    r = await client.request(method, url, json=body, headers={"X-API-Key": "wrong"})
    assert r.status_code == 403


async def test_second_key_accepted(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/documents", json=DOC, headers={"X-API-Key": "second-key"})
    assert r.status_code == 201
    await client.delete(f"/api/documents/{r.json()['id']}", headers={"X-API-Key": "second-key"})


async def test_malformed_json(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post(
        "/api/documents",
        content=b'{"title": "x",',
        headers={**auth, "content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["detail"][0]["type"] == "json_invalid"


async def test_oversized_body(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    big = {"title": "big", "body": "x" * 10_000}  # limit is 4096 in tests
    r = await client.post("/api/documents", json=big, headers=auth)
    assert r.status_code == 413
    assert "exceeds" in r.json()["detail"]


async def test_oversized_chunked_body(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "big", "body": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = await client.post(
        "/api/documents", content=chunks(), headers={**auth, "content-type": "application/json"}
    )
    assert r.status_code == 413


async def test_unknown_field(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post("/api/documents", json={**DOC, "owner": "me"}, headers=auth)
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "extra_forbidden"
    r = await client.patch(f"/api/documents/{uuid.uuid4()}", json={"nope": 1}, headers=auth)
    assert r.status_code == 422


@pytest.mark.parametrize(
    "payload",
    [
        {"body": "no title"},
        {"title": ""},
        {"title": "x", "tags": "notalist"},
        {"title": "x", "tags": [""]},
        {"title": 5},
        [1, 2, 3],
        "just a string",
    ],
)
async def test_invalid_payloads(
    client: httpx.AsyncClient, auth: dict[str, str], payload: object
) -> None:
    r = await client.post("/api/documents", json=payload, headers=auth)
    assert r.status_code == 422, r.text


async def test_patch_null_title_rejected(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post("/api/documents", json=DOC, headers=auth)
    url = f"/api/documents/{r.json()['id']}"
    assert (await client.patch(url, json={"title": None}, headers=auth)).status_code == 422
    await client.delete(url, headers=auth)


@pytest.mark.parametrize("bad", ["123", "not-a-uuid", "' OR 1=1 --", "0" * 100])
async def test_bad_ids(client: httpx.AsyncClient, auth: dict[str, str], bad: str) -> None:
    assert (await client.get(f"/api/documents/{bad}")).status_code == 422
    assert (await client.delete(f"/api/documents/{bad}", headers=auth)).status_code == 422


async def test_unknown_id_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/api/documents/{uuid.uuid4()}")).status_code == 404


@pytest.mark.parametrize(
    "params",
    [{"page": "0"}, {"size": "1000"}, {"page": "abc"}, {"page": "10000", "size": "100"}],
)
async def test_bad_query_params(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    assert (await client.get("/api/search", params=params)).status_code == 422
    if params.get("page") != "10000":
        assert (await client.get("/api/documents", params=params)).status_code == 422
