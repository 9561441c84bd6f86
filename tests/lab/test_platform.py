"""The whole lab, used end to end from the control node after site.yml converged it.

Run by `scripts/test lab` (after the second, changed=0 converge); by hand:
`.venv/bin/pytest -q tests/lab`. Every request goes through nginx on proxy1 over
HTTPS, verified against the lab's internal CA, with the lab's API key: the
same path a user's browser takes.
"""

from __future__ import annotations

import json
import math
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from infra.observability import dashboard_queries, jobs_of
from infra.playbook import ansible_env

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / ".lab"
# The inventory as Ansible resolves it (nested groups, host variables).
INVENTORY: dict[str, Any] = json.loads(
    subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(REPO / "inventories" / "lab"), "--list"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ansible_env(),
    ).stdout
)
HOSTVARS: dict[str, dict[str, Any]] = INVENTORY["_meta"]["hostvars"]
EVERY_HOST = set(HOSTVARS)
PROXY = HOSTVARS[INVENTORY["proxy"]["hosts"][0]]["ansible_host"]
BASE = f"https://{PROXY}"


def call(
    method: str, path: str, body: dict[str, Any] | None = None, key: bool = False
) -> tuple[int, dict[str, str], Any]:
    ctx = ssl.create_default_context(cafile=str(LAB / "ca" / "ca.crt"))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{BASE}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("X-API-Key", (LAB / "secrets" / "app_api_key").read_text().split()[0])
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=15) as resp:
            raw = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read().decode(errors="replace")


def test_every_prometheus_target_is_up() -> None:
    """Every exporter, every service's metrics and the app on both hosts, as Prometheus sees them."""
    deadline = time.monotonic() + 120
    while True:
        status, _, body = call("GET", "/monitoring/prometheus/api/v1/targets?state=active")
        assert status == 200, body
        targets = body["data"]["activeTargets"]
        down = [
            f"{t['labels']['job']}/{t['labels']['instance']}: {t.get('lastError', '')}"
            for t in targets
            if t["health"] != "up"
        ]
        if not down or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert not down, down
    jobs = {t["labels"]["job"] for t in targets}
    assert {"node", "postgres", "redis", "rabbitmq", "app", "nginx", "prometheus", "alertmanager"} <= jobs, jobs
    node_instances = {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "node"}
    assert node_instances == EVERY_HOST


def test_create_cached_read_event_and_search() -> None:
    word = f"lab{uuid.uuid4().hex[:12]}"
    status, _, doc = call("POST", "/api/documents", {"title": f"Lab {word}", "body": f"end to end {word}"}, key=True)
    assert status == 201, doc
    # The worker consumed the document.created task from RabbitMQ and indexed it.
    deadline = time.monotonic() + 60
    while True:
        status, _, found = call("GET", f"/api/search?q={word}")
        assert status == 200, found
        if found["total"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert [hit["id"] for hit in found["hits"]] == [doc["id"]], found
    # Indexed (the worker may touch the row): now two reads, through either app host.
    first = call("GET", f"/api/documents/{doc['id']}")
    second = call("GET", f"/api/documents/{doc['id']}")
    assert first[0] == second[0] == 200
    assert (first[1].get("x-cache"), second[1].get("x-cache")) == ("miss", "hit")


def test_writes_need_the_api_key() -> None:
    status, _, _ = call("POST", "/api/documents", {"title": "no key", "body": "refused"})
    assert status == 401


def test_every_dashboard_query_returns_data() -> None:
    """The seed dashboards' PromQL against the lab's live Prometheus (Grafana itself cannot be installed here).

    Rates need two scrapes after the traffic the tests above made: each query
    gets up to two minutes to return data.
    """
    status, _, body = call("GET", "/monitoring/prometheus/api/v1/targets?state=active")
    assert status == 200, body
    present = {t["labels"]["job"] for t in body["data"]["activeTargets"] if t["health"] == "up"}
    queries = [q for q in dashboard_queries() if jobs_of(q[2]) <= present]  # not Elasticsearch: no such tier here
    assert len(queries) >= 30, len(queries)
    deadline = time.monotonic() + 120
    while True:
        empty = []
        for dashboard, panel, expr in queries:
            query = urllib.parse.urlencode({"query": expr})
            status, _, answer = call("GET", f"/monitoring/prometheus/api/v1/query?{query}")
            assert status == 200 and answer["status"] == "success", (dashboard, panel, expr, answer)
            values = [float(series["value"][1]) for series in answer["data"]["result"]]
            if not values or any(math.isnan(v) for v in values):
                empty.append((dashboard, panel, expr))
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(10)
    assert not empty, f"dashboard queries without data on the lab: {empty}"
