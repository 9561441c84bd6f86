"""Request and response models. Request models forbid unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Source = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Body = Annotated[str, StringConstraints(max_length=200_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentCreate(_Strict):
    title: Title
    body: Body = ""
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    source: Source | None = None


class DocumentReplace(DocumentCreate):
    """PUT: full replacement (same shape as create)."""


class DocumentPatch(_Strict):
    title: Title | None = None
    body: Body | None = None
    tags: list[Tag] | None = Field(default=None, max_length=32)
    source: Source | None = None


class Document(BaseModel):
    id: UUID
    title: str
    body: str
    tags: list[str]
    source: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    indexed: bool = False


class DocumentList(BaseModel):
    items: list[Document]
    page: int
    size: int
    total: int


class SearchHit(BaseModel):
    id: UUID
    title: str
    tags: list[str]
    source: str | None
    score: float
    created_at: datetime | None = None


class FacetValue(BaseModel):
    value: str
    count: int


class SearchResult(BaseModel):
    query: str
    page: int
    size: int
    total: int
    backend: str
    hits: list[SearchHit]
    facets: dict[str, list[FacetValue]]


class CheckResult(BaseModel):
    ok: bool
    required: bool
    latency_ms: float
    error: str | None = None


class ReadyReport(BaseModel):
    status: str
    checks: dict[str, CheckResult]


class VersionInfo(BaseModel):
    name: str
    version: str
    release: str
    hostname: str
    search_backend: str
