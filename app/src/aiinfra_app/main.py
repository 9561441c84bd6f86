"""FastAPI application: documents API, search, health/readiness, metrics, version."""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import __version__
from .cache import DocumentCache, create_redis
from .db import DocumentRepo, create_pool
from .logging_setup import setup_logging
from .messaging import Messaging, PublishError
from .middleware import RequestContextMiddleware
from .models import (
    CheckResult,
    Document,
    DocumentCreate,
    DocumentList,
    DocumentPatch,
    DocumentReplace,
    ReadyReport,
    SearchResult,
    VersionInfo,
)
from .search import SearchBackend, create_search
from .settings import Settings, get_settings
from .tracing import setup_tracing

log = logging.getLogger("aiinfra_app")


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis | None
    cache: DocumentCache
    messaging: Messaging
    search: SearchBackend
    repo: DocumentRepo


@asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[Services]:
    pool = await create_pool(settings)
    redis = create_redis(settings)
    messaging = Messaging(settings)
    search = create_search(settings, pool)
    try:
        try:
            await messaging.connect()
        except Exception as exc:  # broker may come later; publishing retries to connect
            log.warning("RabbitMQ not reachable at startup", extra={"error": repr(exc)})
        yield Services(
            settings=settings,
            pool=pool,
            redis=redis,
            cache=DocumentCache(redis, settings.cache_ttl),
            messaging=messaging,
            search=search,
            repo=DocumentRepo(pool),
        )
    finally:
        log.info("shutting down: closing connections")
        await messaging.close()
        await search.close()
        if redis is not None:
            await redis.aclose()
        await pool.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application. Settings default to the environment / env file."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cfg = settings or get_settings()
        setup_logging(cfg.log_level, cfg.log_format)
        app.state.settings = cfg
        if not cfg.api_keys:
            log.warning("APP_API_KEYS is empty: all write requests will be refused")
        try:
            async with _services(cfg) as services:
                app.state.services = services
                log.info(
                    "started",
                    extra={
                        "version": __version__,
                        "release": cfg.release,
                        "search_backend": services.search.name,
                    },
                )
                yield
        finally:
            if tracing is not None:
                tracing.shutdown()

    app = FastAPI(
        title="aiinfra documents API",
        version=__version__,
        description="Documents for AI applications: store, cache, publish, index, search.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # Tracing wraps the middleware stack, which Starlette builds on the first
    # event (lifespan included): it is decided here, from the same settings.
    tracing = setup_tracing(app, settings or get_settings())

    def max_body() -> int:
        cfg: Settings | None = app.state.settings
        return cfg.max_body_bytes if cfg else 1_048_576

    app.add_middleware(RequestContextMiddleware, max_body=max_body)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        code = status.HTTP_422_UNPROCESSABLE_CONTENT
        if any(e.get("type") == "json_invalid" for e in errors):
            code = status.HTTP_400_BAD_REQUEST
        safe = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in errors
        ]
        return JSONResponse({"detail": safe}, status_code=code)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse({"detail": "internal error"}, status_code=500)

    _register_routes(app)
    return app


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def require_api_key(request: Request, key: Annotated[str | None, Depends(_api_key_header)]) -> None:
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key (X-API-Key header)",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    cfg: Settings = request.app.state.services.settings
    for valid in cfg.api_keys:
        if hmac.compare_digest(key.encode(), valid.get_secret_value().encode()):
            return
    raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")


Auth = Depends(require_api_key)
Page = Annotated[int, Query(ge=1, le=10_000)]
Size = Annotated[int, Query(ge=1, le=100)]


async def _timed(
    name: str, required: bool, limit_s: float, fn: Callable[[], Awaitable[Any]]
) -> tuple[str, CheckResult]:
    start = time.perf_counter()
    error: str | None = None
    try:
        await asyncio.wait_for(fn(), limit_s)
    except TimeoutError:
        error = f"timeout after {limit_s}s"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    ms = round((time.perf_counter() - start) * 1000, 2)
    return name, CheckResult(ok=error is None, required=required, latency_ms=ms, error=error)


def _register_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["ops"],
        response_model=ReadyReport,
        responses={503: {"model": ReadyReport}},
    )
    async def ready(svc: Svc) -> JSONResponse:
        cfg = svc.settings
        t = cfg.ready_timeout

        async def pg() -> None:
            await svc.pool.fetchval("SELECT 1")

        async def rd() -> None:
            if svc.redis is None:
                raise RuntimeError("APP_REDIS_URL not configured")
            await svc.redis.ping()

        checks = await asyncio.gather(
            _timed("postgres", True, t, pg),
            _timed("redis", cfg.redis_required, t, rd),
            _timed("rabbitmq", True, t, svc.messaging.ping),
            _timed(f"search:{svc.search.name}", cfg.search_required, t, svc.search.ping),
        )
        results = dict(checks)
        ok = all(c.ok or not c.required for c in results.values())
        report = ReadyReport(status="ok" if ok else "fail", checks=results)
        return JSONResponse(report.model_dump(), status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/version", tags=["ops"], response_model=VersionInfo)
    async def version(svc: Svc) -> VersionInfo:
        return VersionInfo(
            name="aiinfra-app",
            version=__version__,
            release=svc.settings.release,
            hostname=socket.gethostname(),
            search_backend=svc.search.name,
        )

    @app.post(
        "/api/documents",
        tags=["documents"],
        status_code=201,
        response_model=Document,
        dependencies=[Auth],
        responses={503: {"description": "event bus unavailable; nothing was stored"}},
    )
    async def create_document(data: DocumentCreate, svc: Svc, response: Response) -> Document:
        doc = await svc.repo.insert(data)
        try:
            await svc.messaging.enqueue_index("index", str(doc.id))
            await svc.messaging.publish_event("document.created", str(doc.id), doc.version)
        except PublishError as exc:
            # Compensate so the client can retry safely: no document without its task.
            await svc.repo.delete(doc.id)
            raise HTTPException(503, "event bus unavailable, document not stored") from exc
        response.headers["Location"] = f"/api/documents/{doc.id}"
        return doc

    @app.get("/api/documents", tags=["documents"], response_model=DocumentList)
    async def list_documents(
        svc: Svc,
        page: Page = 1,
        size: Size = 20,
        tag: Annotated[str | None, Query(max_length=64)] = None,
        source: Annotated[str | None, Query(max_length=100)] = None,
    ) -> DocumentList:
        items, total = await svc.repo.list(page, size, tag, source)
        return DocumentList(items=items, page=page, size=size, total=total)

    @app.get("/api/documents/{doc_id}", tags=["documents"], response_model=Document)
    async def get_document(doc_id: UUID, svc: Svc, response: Response) -> Document:
        cached = await svc.cache.get(doc_id)
        if cached is not None:
            response.headers["X-Cache"] = "hit"
            return cached
        doc = await svc.repo.get(doc_id)
        if doc is None:
            raise HTTPException(404, "document not found")
        await svc.cache.set(doc)
        response.headers["X-Cache"] = "miss"
        return doc

    async def _after_update(svc: Services, doc: Document) -> None:
        await svc.cache.invalidate(doc.id)
        try:
            await svc.messaging.enqueue_index("index", str(doc.id))
            await svc.messaging.publish_event("document.updated", str(doc.id), doc.version)
        except PublishError:
            # Stored; the index catches up via `aiinfra-worker --reindex`.
            log.warning("update stored but not published", extra={"doc_id": str(doc.id)})

    @app.put(
        "/api/documents/{doc_id}", tags=["documents"], response_model=Document, dependencies=[Auth]
    )
    async def replace_document(doc_id: UUID, data: DocumentReplace, svc: Svc) -> Document:
        doc = await svc.repo.update(doc_id, data.model_dump())
        if doc is None:
            raise HTTPException(404, "document not found")
        await _after_update(svc, doc)
        return doc

    @app.patch(
        "/api/documents/{doc_id}", tags=["documents"], response_model=Document, dependencies=[Auth]
    )
    async def patch_document(doc_id: UUID, data: DocumentPatch, svc: Svc) -> Document:
        changes = data.model_dump(exclude_unset=True)
        for required in ("title", "body", "tags"):
            if required in changes and changes[required] is None:
                raise HTTPException(422, f"{required} may not be null")
        doc = await svc.repo.update(doc_id, changes)
        if doc is None:
            raise HTTPException(404, "document not found")
        await _after_update(svc, doc)
        return doc

    @app.delete("/api/documents/{doc_id}", tags=["documents"], status_code=204, dependencies=[Auth])
    async def delete_document(doc_id: UUID, svc: Svc) -> Response:
        if not await svc.repo.delete(doc_id):
            raise HTTPException(404, "document not found")
        await svc.cache.invalidate(doc_id)
        try:
            await svc.messaging.enqueue_index("delete", str(doc_id))
            await svc.messaging.publish_event("document.deleted", str(doc_id), 0)
        except PublishError:
            log.warning("delete stored but not published", extra={"doc_id": str(doc_id)})
        return Response(status_code=204)

    @app.get("/api/search", tags=["search"], response_model=SearchResult)
    async def search(
        svc: Svc,
        q: Annotated[str, Query(max_length=500)] = "",
        page: Page = 1,
        size: Size = 10,
        tag: Annotated[str | None, Query(max_length=64)] = None,
        source: Annotated[str | None, Query(max_length=100)] = None,
    ) -> SearchResult:
        if (page - 1) * size + size > 10_000:
            raise HTTPException(422, "page * size must not exceed 10000")
        try:
            return await svc.search.search(q, page, size, tag, source)
        except Exception as exc:
            log.error("search failed", extra={"error": repr(exc)})
            raise HTTPException(503, "search backend unavailable") from exc


app = create_app()


def run() -> None:
    """`aiinfra-api`: run uvicorn with the server settings.

    APP_HOST, APP_PORT, APP_WORKERS, APP_FORWARDED_ALLOW_IPS, APP_GRACEFUL_TIMEOUT and
    APP_KEEPALIVE_TIMEOUT.
    """
    import uvicorn

    cfg = get_settings()
    uvicorn.run(
        "aiinfra_app.main:app",
        host=cfg.host,
        port=cfg.port,
        workers=cfg.workers,
        proxy_headers=True,
        forwarded_allow_ips=cfg.forwarded_allow_ips,
        log_config=None,
        timeout_graceful_shutdown=cfg.graceful_timeout,
        timeout_keep_alive=cfg.keepalive_timeout,
    )
