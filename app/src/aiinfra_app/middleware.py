"""Pure-ASGI middleware: request id, body size limit, metrics and access log."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logging_setup import request_id_var
from .metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("aiinfra_app.access")
_RID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


async def _send_json(send: Send, status: int, body: dict[str, Any], rid: str) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", rid.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body: Callable[[], int]) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = headers.get("x-request-id", "")
        if not _RID_OK.match(rid):
            rid = uuid.uuid4().hex
        token = request_id_var.set(rid)
        # The server span when tracing is on (its middleware wraps this one);
        # a non-recording no-op otherwise.
        trace.get_current_span().set_attribute("app.request_id", rid)
        method: str = scope["method"]
        start = time.perf_counter()
        status_holder = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *[h for h in message["headers"] if h[0].lower() != b"x-request-id"],
                    (b"x-request-id", rid.encode()),
                ]
            await send(message)

        try:
            if method in _BODY_METHODS:
                limit = self.max_body()
                too_large = False
                length = headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > limit):
                    too_large = length.isdigit()
                    if not too_large:
                        status_holder[0] = 400
                        await _send_json(send, 400, {"detail": "invalid Content-Length"}, rid)
                        return
                chunks: list[bytes] = []
                size = 0
                if not too_large:
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            return
                        chunk = message.get("body", b"")
                        size += len(chunk)
                        if size > limit:
                            too_large = True
                            break
                        chunks.append(chunk)
                        if not message.get("more_body", False):
                            break
                if too_large:
                    status_holder[0] = 413
                    await _send_json(
                        send, 413, {"detail": f"request body exceeds {limit} bytes"}, rid
                    )
                    return
                body = b"".join(chunks)
                sent = False

                async def replay() -> Message:
                    nonlocal sent
                    if not sent:
                        sent = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()

                await self.app(scope, replay, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            status = str(status_holder[0])
            HTTP_REQUESTS.labels(method, route, status).inc()
            HTTP_LATENCY.labels(method, route, status).observe(elapsed)
            if route not in ("/health", "/metrics"):
                log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": scope.get("path"),
                        "route": route,
                        "status": status_holder[0],
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            request_id_var.reset(token)
