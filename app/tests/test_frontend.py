"""The static frontend: every asset index.html references exists and is content-hashed."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

FRONTEND = Path(__file__).resolve().parents[1] / "frontend"


def test_index_references_hashed_assets() -> None:
    html = (FRONTEND / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="/(assets/[^"]+)"', html)
    assert any(r.endswith(".js") for r in refs)
    assert any(r.endswith(".css") for r in refs)
    for ref in refs:
        path = FRONTEND / ref
        assert path.is_file(), ref
        m = re.fullmatch(r"app\.([0-9a-f]{8})\.(js|css)", path.name)
        assert m, path.name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
        assert m.group(1) == digest, f"{path.name}: rename to app.{digest}.{m.group(2)}"


def test_frontend_only_calls_same_origin_api() -> None:
    js = next((FRONTEND / "assets").glob("app.*.js")).read_text()
    assert "/api/documents" in js and "/api/search" in js and "X-API-Key" in js
    assert "http://" not in js and "https://" not in js
