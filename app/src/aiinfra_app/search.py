"""Search backends: PostgreSQL full-text search or Elasticsearch (REST via httpx)."""

from __future__ import annotations

import ssl
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import httpx

from .models import Document, FacetValue, SearchHit, SearchResult
from .settings import Settings

FACET_FIELDS = ("tags", "source")
FACET_LIMIT = 20


class SearchBackend(Protocol):
    name: str

    async def setup(self) -> None: ...
    async def index(self, doc: Document) -> None: ...
    async def delete(self, doc_id: UUID) -> None: ...
    async def search(
        self, q: str, page: int, size: int, tag: str | None, source: str | None
    ) -> SearchResult: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class PostgresSearch:
    """tsvector column + GIN index; the worker writes the vector (``index``)."""

    name = "postgres"
    config = "simple"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def setup(self) -> None:
        return None

    async def index(self, doc: Document) -> None:
        await self.pool.execute(
            """UPDATE documents SET
                 search_vector =
                   setweight(to_tsvector($2::regconfig, title), 'A') ||
                   setweight(to_tsvector($2::regconfig, array_to_string(tags, ' ')), 'B') ||
                   setweight(to_tsvector($2::regconfig, coalesce(source, '')), 'C') ||
                   setweight(to_tsvector($2::regconfig, body), 'D'),
                 indexed_version = version,
                 indexed_at = now()
               WHERE id = $1""",
            doc.id,
            self.config,
        )

    async def delete(self, doc_id: UUID) -> None:
        return None  # the row is gone with the document

    async def search(
        self, q: str, page: int, size: int, tag: str | None, source: str | None
    ) -> SearchResult:
        args: list[Any] = []
        clauses = ["search_vector IS NOT NULL"]
        rank = "0.0::real"
        if q.strip():
            args += [self.config, q]
            tsq = "websearch_to_tsquery($1::regconfig, $2)"
            clauses.append(f"search_vector @@ {tsq}")
            rank = f"ts_rank(search_vector, {tsq})"
        if tag is not None:
            args.append(tag)
            clauses.append(f"${len(args)} = ANY(tags)")
        if source is not None:
            args.append(source)
            clauses.append(f"source = ${len(args)}")
        where = " AND ".join(clauses)
        async with self.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) FROM documents WHERE {where}", *args)
            rows = await conn.fetch(
                f"""SELECT id, title, tags, source, created_at, {rank} AS score
                    FROM documents WHERE {where}
                    ORDER BY score DESC, created_at DESC, id
                    LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}""",
                *args,
                size,
                (page - 1) * size,
            )
            tag_rows = await conn.fetch(
                f"""SELECT t AS value, count(*) AS count
                    FROM documents, unnest(tags) AS t WHERE {where}
                    GROUP BY t ORDER BY count DESC, t LIMIT {FACET_LIMIT}""",
                *args,
            )
            source_rows = await conn.fetch(
                f"""SELECT source AS value, count(*) AS count FROM documents
                    WHERE {where} AND source IS NOT NULL
                    GROUP BY source ORDER BY count DESC, source LIMIT {FACET_LIMIT}""",
                *args,
            )
        return SearchResult(
            query=q,
            page=page,
            size=size,
            total=int(total),
            backend=self.name,
            hits=[
                SearchHit(
                    id=r["id"],
                    title=r["title"],
                    tags=list(r["tags"]),
                    source=r["source"],
                    score=float(r["score"]),
                    created_at=r["created_at"],
                )
                for r in rows
            ],
            facets={
                "tags": [FacetValue(value=r["value"], count=r["count"]) for r in tag_rows],
                "source": [FacetValue(value=r["value"], count=r["count"]) for r in source_rows],
            },
        )

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT count(*) FROM (SELECT 1 FROM documents LIMIT 1) s")

    async def close(self) -> None:
        return None


class ElasticsearchSearch:
    """Elasticsearch via its REST API (no client library)."""

    name = "elasticsearch"

    def __init__(self, settings: Settings, refresh: str = "false") -> None:
        assert settings.es_url
        auth: tuple[str, str] | None = None
        if settings.es_username and settings.es_password:
            auth = (settings.es_username, settings.es_password.get_secret_value())
        verify: bool | ssl.SSLContext = settings.es_verify_tls
        if settings.es_ca_file:
            verify = ssl.create_default_context(cafile=settings.es_ca_file)
        self.index_name = settings.es_index
        self.refresh = refresh
        self.client = httpx.AsyncClient(
            base_url=settings.es_url.rstrip("/"),
            auth=auth,
            verify=verify,
            timeout=settings.http_timeout,
        )

    async def _req(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = await self.client.request(method, path, **kw)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    async def setup(self) -> None:
        resp = await self.client.head(f"/{self.index_name}")
        if resp.status_code == 200:
            return
        body = {
            "mappings": {
                "properties": {
                    "title": {"type": "text"},
                    "body": {"type": "text"},
                    "tags": {"type": "keyword"},
                    "source": {"type": "keyword"},
                    "version": {"type": "integer"},
                    "created_at": {"type": "date"},
                }
            }
        }
        resp = await self.client.put(f"/{self.index_name}", json=body)
        if resp.status_code == 400 and "resource_already_exists" in resp.text:
            return
        resp.raise_for_status()

    async def index(self, doc: Document) -> None:
        await self._req(
            "PUT",
            f"/{self.index_name}/_doc/{doc.id}",
            params={
                "refresh": self.refresh,
                "version": doc.version,
                "version_type": "external_gte",
            },
            json={
                "title": doc.title,
                "body": doc.body,
                "tags": doc.tags,
                "source": doc.source,
                "version": doc.version,
                "created_at": doc.created_at.isoformat(),
            },
        )

    async def delete(self, doc_id: UUID) -> None:
        resp = await self.client.delete(
            f"/{self.index_name}/_doc/{doc_id}", params={"refresh": self.refresh}
        )
        if resp.status_code not in (200, 404):
            resp.raise_for_status()

    async def search(
        self, q: str, page: int, size: int, tag: str | None, source: str | None
    ) -> SearchResult:
        must: list[dict[str, Any]] = []
        if q.strip():
            must.append(
                {
                    "simple_query_string": {
                        "query": q,
                        "fields": ["title^3", "tags^2", "source", "body"],
                        "default_operator": "and",
                    }
                }
            )
        filters: list[dict[str, Any]] = []
        if tag is not None:
            filters.append({"term": {"tags": tag}})
        if source is not None:
            filters.append({"term": {"source": source}})
        body = {
            "from": (page - 1) * size,
            "size": size,
            "track_total_hits": True,
            "query": {"bool": {"must": must or [{"match_all": {}}], "filter": filters}},
            "aggs": {f: {"terms": {"field": f, "size": FACET_LIMIT}} for f in FACET_FIELDS},
            "_source": ["title", "tags", "source", "created_at"],
        }
        data = await self._req("POST", f"/{self.index_name}/_search", json=body)
        hits = [
            SearchHit(
                id=UUID(h["_id"]),
                title=h["_source"].get("title", ""),
                tags=h["_source"].get("tags") or [],
                source=h["_source"].get("source"),
                score=float(h.get("_score") or 0.0),
                created_at=h["_source"].get("created_at"),
            )
            for h in data["hits"]["hits"]
        ]
        facets = {
            f: [
                FacetValue(value=str(b["key"]), count=int(b["doc_count"]))
                for b in data.get("aggregations", {}).get(f, {}).get("buckets", [])
            ]
            for f in FACET_FIELDS
        }
        return SearchResult(
            query=q,
            page=page,
            size=size,
            total=int(data["hits"]["total"]["value"]),
            backend=self.name,
            hits=hits,
            facets=facets,
        )

    async def ping(self) -> None:
        data = await self._req("GET", "/_cluster/health")
        if data.get("status") == "red":
            raise RuntimeError("cluster status red")

    async def close(self) -> None:
        await self.client.aclose()


def create_search(settings: Settings, pool: asyncpg.Pool, refresh: str = "false") -> SearchBackend:
    if settings.es_url:
        return ElasticsearchSearch(settings, refresh=refresh)
    return PostgresSearch(pool)
