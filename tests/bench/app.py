#!/usr/bin/env python3
"""Application tier benchmark: prints figures, asserts nothing about timing.

Through nginx on the lab's proxy (inventories/lab; nothing else is addressed):

1. a cached document GET (Redis hit) against a trivial endpoint (/api/version)
   of the same app hosts: requests/s, p50 and p99 latency, and their ratio;
2. create-to-searchable latency: POST a document, poll /api/search until the
   worker has indexed it.

Bounded: --requests per endpoint (default 2000) over --concurrency keep-alive
connections, --samples documents for the search latency (default 10).

    scripts/lab up && .venv/bin/python tests/bench/app.py
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from infra.lab import LAB, address, group  # noqa: E402

PROXY = address(group("proxy")[0])


def _context(cafile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cafile))


def _request(
    conn: http.client.HTTPSConnection, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    payload = json.dumps(body).encode() if body is not None else None
    hdrs = dict(headers or {})
    if payload is not None:
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=hdrs)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def load(ctx: ssl.SSLContext, path: str, requests: int, concurrency: int) -> dict[str, float]:
    """GET path `requests` times over `concurrency` keep-alive connections."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_worker = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]

    def worker(count: int) -> None:
        conn = http.client.HTTPSConnection(PROXY, 443, context=ctx, timeout=10)
        mine: list[float] = []
        try:
            for _ in range(count):
                start = time.perf_counter()
                status, _, _ = _request(conn, "GET", path)
                mine.append(time.perf_counter() - start)
                if status != 200:
                    with lock:
                        errors.append(str(status))
        finally:
            conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in per_worker]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{path}: {len(errors)} non-200 answers, e.g. {errors[:3]}")
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


def create_to_searchable(ctx: ssl.SSLContext, api_key: str, samples: int, timeout: float) -> list[float]:
    conn = http.client.HTTPSConnection(PROXY, 443, context=ctx, timeout=10)
    out: list[float] = []
    try:
        for _ in range(samples):
            token = f"bench{uuid.uuid4().hex[:12]}"
            start = time.perf_counter()
            status, _, raw = _request(
                conn,
                "POST",
                "/api/documents",
                {"title": f"bench {token}", "body": token, "tags": ["bench"]},
                {"X-API-Key": api_key},
            )
            if status != 201:
                raise SystemExit(f"create failed: {status} {raw[:200]!r}")
            doc_id = json.loads(raw)["id"]
            while True:
                status, _, raw = _request(conn, "GET", f"/api/search?q={token}")
                if status == 200 and any(h["id"] == doc_id for h in json.loads(raw)["hits"]):
                    out.append(time.perf_counter() - start)
                    break
                if time.perf_counter() - start > timeout:
                    raise SystemExit(f"{doc_id} not searchable after {timeout}s")
                time.sleep(0.01)
    finally:
        conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="GETs per endpoint (max 20000)")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections (max 64)")
    parser.add_argument("--samples", type=int, default=10, help="documents for create-to-searchable (max 100)")
    args = parser.parse_args()
    requests = max(100, min(args.requests, 20000))
    concurrency = max(1, min(args.concurrency, 64))
    samples = max(1, min(args.samples, 100))

    ctx = _context(LAB / "ca" / "ca.crt")
    api_key = (LAB / "secrets" / "app_api_key").read_text().split()[0]

    conn = http.client.HTTPSConnection(PROXY, 443, context=ctx, timeout=10)
    status, _, raw = _request(
        conn,
        "POST",
        "/api/documents",
        {"title": "bench cached", "body": "x" * 2000, "tags": ["bench"]},
        {"X-API-Key": api_key},
    )
    if status != 201:
        raise SystemExit(f"create failed: {status} {raw[:200]!r}")
    doc_path = f"/api/documents/{json.loads(raw)['id']}"
    for _ in range(4):  # fill the cache (both app hosts share Redis)
        status, headers, _ = _request(conn, "GET", doc_path)
    conn.close()
    if headers.get("x-cache") != "hit":
        raise SystemExit(f"{doc_path} is not served from the cache (X-Cache {headers.get('x-cache')})")

    load(ctx, "/api/version", min(200, requests), concurrency)  # warm-up, not reported
    trivial = load(ctx, "/api/version", requests, concurrency)
    cached = load(ctx, doc_path, requests, concurrency)
    lat = create_to_searchable(ctx, api_key, samples, timeout=30)

    print(f"app tier through nginx at https://{PROXY} ({requests} GETs each, {concurrency} connections)")
    print(f"{'endpoint':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, fig in (("GET /api/version (trivial)", trivial), ("GET /api/documents/{id} (cached)", cached)):
        print(f"{name:<34}{fig['rps']:>10.0f}{fig['p50_ms']:>10.2f}{fig['p99_ms']:>10.2f}")
    print(
        f"ratio cached/trivial: throughput {cached['rps'] / trivial['rps']:.2f}, "
        f"p50 {cached['p50_ms'] / trivial['p50_ms']:.2f}, p99 {cached['p99_ms'] / trivial['p99_ms']:.2f}"
    )
    ms = sorted(x * 1000 for x in lat)
    print(
        f"create-to-searchable ({samples} documents): median {statistics.median(ms):.0f} ms, "
        f"min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms"
    )


if __name__ == "__main__":
    main()
