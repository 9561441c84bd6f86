"""Traces over OTLP/HTTP: a receiver in the test process stands in for Tempo.

With APP_OTLP_ENDPOINT set, a request produces a server span named by its route
that carries the request id, with the asyncpg query as a child span in the same
trace. Without it nothing is exported, not even to the OTLP default endpoint the
environment points at the receiver.
"""

from __future__ import annotations

import gzip
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from pydantic import ValidationError

from aiinfra_app.main import create_app
from aiinfra_app.settings import Settings
from aiinfra_app.tracing import REQUEST_ID_ATTRIBUTE, traces_url

from .conftest import make_settings


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    service: str


def _value(kv: KeyValue) -> Any:
    field = kv.value.WhichOneof("value")
    return getattr(kv.value, field) if field else None


class OtlpReceiver:
    """A minimal OTLP/HTTP (protobuf) traces endpoint on a loopback port."""

    def __init__(self) -> None:
        self.exports: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.paths.append(self.path)
                receiver.exports.append(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[Span]:
        found: list[Span] = []
        for export in self.exports:
            for resource_spans in export.resource_spans:
                resource = {kv.key: _value(kv) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            Span(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                attributes={kv.key: _value(kv) for kv in span.attributes},
                                service=str(resource.get("service.name")),
                            )
                        )
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    try:
        yield r
    finally:
        r.close()


async def _one_request(cfg: Settings, rid: str) -> httpx.Response:
    """Start an app, GET a document that does not exist (one database query), and stop
    the app: its shutdown exports whatever spans are still batched."""
    app = create_app(cfg)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
            response = await client.get(
                f"/api/documents/{uuid.uuid4()}", headers={"X-Request-ID": rid}
            )
    finally:
        await lifespan.__aexit__(None, None, None)
    return response


async def test_request_span_with_request_id_reaches_the_otlp_endpoint(
    receiver: OtlpReceiver, migrated: None
) -> None:
    rid = f"trace-{uuid.uuid4().hex}"
    response = await _one_request(make_settings(otlp_endpoint=receiver.endpoint), rid)
    assert response.status_code == 404
    assert response.headers["x-request-id"] == rid

    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}
    spans = receiver.spans()
    servers = [s for s in spans if s.attributes.get(REQUEST_ID_ATTRIBUTE) == rid]
    assert len(servers) == 1, [(s.name, s.attributes) for s in spans]
    (server,) = servers
    assert server.name == "GET /api/documents/{doc_id}"
    assert server.attributes["http.route"] == "/api/documents/{doc_id}"
    assert server.parent_id == ""
    assert server.service == "aiinfra-app"
    # The database query is a span of the same trace, below the request.
    queries = [
        s
        for s in spans
        if s.trace_id == server.trace_id and s.attributes.get("db.system") == "postgresql"
    ]
    assert queries, [(s.name, s.attributes) for s in spans]
    ids = {s.span_id: s for s in spans}
    for query in queries:
        parent = query
        while parent.parent_id:
            parent = ids[parent.parent_id]
        assert parent is server


async def test_without_an_endpoint_nothing_is_exported(
    receiver: OtlpReceiver, migrated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were an exporter created anyway, the OTLP defaults would send it here.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{receiver.endpoint}/v1/traces")
    rid = f"untraced-{uuid.uuid4().hex}"
    response = await _one_request(make_settings(otlp_endpoint=""), rid)
    assert response.status_code == 404
    assert response.headers["x-request-id"] == rid
    assert receiver.exports == []


def test_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ValidationError, match="APP_OTLP_ENDPOINT must be an http"):
        make_settings(otlp_endpoint="tempo:4318")
    assert make_settings(otlp_endpoint=" ").otlp_endpoint is None


def test_traces_url() -> None:
    assert traces_url("http://10.0.0.5:4318") == "http://10.0.0.5:4318/v1/traces"
    assert traces_url("http://10.0.0.5:4318/") == "http://10.0.0.5:4318/v1/traces"
    assert traces_url("https://t.example/v1/traces") == "https://t.example/v1/traces"
