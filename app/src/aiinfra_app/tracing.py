"""Traces over OTLP/HTTP to Tempo, on when ``APP_OTLP_ENDPOINT`` is set.

With no endpoint nothing is set up: no tracer provider, no instrumentation, no
exporter (so nothing is sent anywhere, not even to the OTLP default
localhost:4318). With one, every HTTP request gets a server span (named by its
route template) carrying the request id, with a child span per asyncpg query,
batched to ``<endpoint>/v1/traces``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from . import __version__
from .settings import Settings

# The span attribute that carries the request id (also the X-Request-ID header
# and the `request_id` field of every log line).
REQUEST_ID_ATTRIBUTE = "app.request_id"


@dataclass
class Tracing:
    provider: TracerProvider

    def shutdown(self) -> None:
        """Export what is still queued, then stop instrumenting asyncpg."""
        self.provider.shutdown()
        AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP traces URL from a base endpoint (``http://tempo:4318``) or a full one."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def setup_tracing(app: FastAPI, settings: Settings) -> Tracing | None:
    """Instrument the app when an OTLP endpoint is configured; None (and nothing done) otherwise."""
    if not settings.otlp_endpoint:
        return None
    resource = Resource.create(
        {
            "service.name": settings.otlp_service_name,
            "service.version": __version__,
            "deployment.environment.name": settings.release,
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(
        endpoint=traces_url(settings.otlp_endpoint), timeout=settings.otlp_timeout
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # The provider is passed explicitly: nothing global, so an app without an
    # endpoint in the same process stays untraced.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls="/health,/metrics",
        exclude_spans=["receive", "send"],
    )
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    return Tracing(provider)
