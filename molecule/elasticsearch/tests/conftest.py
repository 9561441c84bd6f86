from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))

REAL = bool(os.environ.get("ELASTICSEARCH_DEB"))
NOT_RUN = (
    "NOT RUN: molecule/elasticsearch converge, idempotence and verify against a real Elasticsearch "
    "(set ELASTICSEARCH_DEB to an elasticsearch .deb on the control node); only the --check run was tested"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a .deb only the tests marked check_mode can run; the others report NOT RUN."""
    if REAL:
        return
    for item in items:
        if item.get_closest_marker("check_mode") is None:
            item.add_marker(pytest.mark.skip(reason=NOT_RUN))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check_mode: runs after the --check-only scenario (no .deb)")
    config.addinivalue_line("markers", "real: needs the role converged from a real .deb")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """A short marker line (scripts/test looks for it) and the explanation."""
    if not REAL:
        terminalreporter.write_line("MOLECULE-NOT-RUN: elasticsearch")
        terminalreporter.write_line(NOT_RUN)
