"""The seed Grafana dashboards: the five the design names, well-formed, every panel
querying Prometheus (the queries themselves run against a live Prometheus in
the lab, tests/lab/test_observability.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DASHBOARDS = Path(__file__).resolve().parents[2] / "roles" / "grafana" / "files" / "dashboards"
SEED = {"system-overview", "service-health", "database-performance", "cache-hit-rates", "queue-metrics"}


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def test_the_seed_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARDS.glob("*.json")} == SEED


def test_uids_are_unique() -> None:
    uids = [_load(p)["uid"] for p in DASHBOARDS.glob("*.json")]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.stem)
def test_every_panel_queries_prometheus(path: Path) -> None:
    panels = _load(path)["panels"]
    assert len(panels) >= 5
    ids = [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids)
    for panel in panels:
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
