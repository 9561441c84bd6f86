"""PostgreSQL access (asyncpg)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from .models import Document, DocumentCreate
from .settings import Settings

_COLUMNS = (
    "id, title, body, tags, source, version, created_at, updated_at, "
    "(indexed_version IS NOT DISTINCT FROM version) AS indexed"
)


async def create_pool(settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=min(settings.db_pool_min, settings.db_pool_max),
        max_size=settings.db_pool_max,
        command_timeout=settings.db_command_timeout,
        timeout=settings.db_command_timeout,
    )
    assert pool is not None
    return pool


def row_to_document(row: asyncpg.Record) -> Document:
    return Document(
        id=row["id"],
        title=row["title"],
        body=row["body"],
        tags=list(row["tags"]),
        source=row["source"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        indexed=bool(row["indexed"]),
    )


def document_to_json(doc: Document) -> str:
    return doc.model_dump_json()


def document_from_json(raw: str | bytes) -> Document:
    return Document.model_validate(json.loads(raw))


class DocumentRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert(self, data: DocumentCreate) -> Document:
        row = await self.pool.fetchrow(
            f"""INSERT INTO documents (id, title, body, tags, source)
                VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}""",
            uuid4(),
            data.title,
            data.body,
            data.tags,
            data.source,
        )
        assert row is not None
        return row_to_document(row)

    async def get(self, doc_id: UUID) -> Document | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM documents WHERE id = $1", doc_id)
        return row_to_document(row) if row else None

    async def update(self, doc_id: UUID, changes: dict[str, Any]) -> Document | None:
        allowed = {"title", "body", "tags", "source"}
        fields = [k for k in changes if k in allowed]
        sets = [f"{name} = ${i}" for i, name in enumerate(fields, start=2)]
        sets += ["version = version + 1", "updated_at = now()"]
        row = await self.pool.fetchrow(
            f"UPDATE documents SET {', '.join(sets)} WHERE id = $1 RETURNING {_COLUMNS}",
            doc_id,
            *[changes[k] for k in fields],
        )
        return row_to_document(row) if row else None

    async def delete(self, doc_id: UUID) -> bool:
        result = await self.pool.execute("DELETE FROM documents WHERE id = $1", doc_id)
        return bool(result.endswith(" 1"))

    async def list(
        self, page: int, size: int, tag: str | None = None, source: str | None = None
    ) -> tuple[list[Document], int]:
        where, args = _filters(tag, source)
        total = await self.pool.fetchval(f"SELECT count(*) FROM documents {where}", *args)
        rows = await self.pool.fetch(
            f"""SELECT {_COLUMNS} FROM documents {where}
                ORDER BY created_at DESC, id DESC
                LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}""",
            *args,
            size,
            (page - 1) * size,
        )
        return [row_to_document(r) for r in rows], int(total)


def _filters(tag: str | None, source: str | None, start: int = 1) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if tag is not None:
        args.append(tag)
        clauses.append(f"${start + len(args) - 1} = ANY(tags)")
    if source is not None:
        args.append(source)
        clauses.append(f"source = ${start + len(args) - 1}")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args
