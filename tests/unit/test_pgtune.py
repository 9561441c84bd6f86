"""Unit tests for plugins/filter/pgtune.py.

Expected values are worked out by hand from PGTune's formulas in
le0pard/pgtune src/features/configuration/configurationSlice.js (selectors) and
src/common/components/configurationView/index.jsx (formatValue), master at commit
7caef27 (2026), for OS type Linux and "DB size" mid_ram (PGTune's defaults).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped,unused-ignore]

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "pgtune.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aiinfra_pgtune_filter", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


pgtune_mod = _load()
pgtune: Any = pgtune_mod.pgtune
pgtune_floor: Any = pgtune_mod.pgtune_floor
pg_size_bytes: Any = pgtune_mod.pg_size_bytes


def test_web_4gb_2cpu_ssd() -> None:
    # total = 4194304kB; shared_buffers = total/4; effective_cache_size = total*3/4;
    # maintenance_work_mem = total/16; wal_buffers = 3% of shared_buffers capped at 16MB;
    # fewer than 4 CPUs: PGTune prints no parallel settings and uses 8 workers for
    # work_mem = (4194304 - 1048576) / ((200 + 8) * 3) = 5041.2 -> 5041kB;
    # shared_buffers < 2GB -> huge_pages off.
    assert pgtune(4096, 2, max_connections=200, storage="ssd", db_type="web", pg_version=15) == {
        "max_connections": "200",
        "shared_buffers": "1GB",
        "effective_cache_size": "3GB",
        "maintenance_work_mem": "256MB",
        "checkpoint_completion_target": "0.9",
        "wal_buffers": "16MB",
        "default_statistics_target": "100",
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        "work_mem": "5041kB",
        "huge_pages": "off",
        "min_wal_size": "1GB",
        "max_wal_size": "4GB",
        # not printed by PGTune below 4 CPUs: PostgreSQL's defaults
        "max_worker_processes": "8",
        "max_parallel_workers_per_gather": "2",
        "max_parallel_workers": "8",
        "max_parallel_maintenance_workers": "2",
    }


def test_oltp_16gb_8cpu_hdd() -> None:
    # work_mem = (16777216 - 4194304) / ((200 + 8) * 3) = 20164.9 -> 20164kB;
    # hdd -> random_page_cost 4, effective_io_concurrency 2; oltp WAL 2GB/8GB;
    # workers_per_gather = ceil(8/2) = 4; maintenance workers = min(ceil(8/2), 4).
    assert pgtune(16384, 8, storage="hdd", db_type="oltp", pg_version=16) == {
        "max_connections": "200",
        "shared_buffers": "4GB",
        "effective_cache_size": "12GB",
        "maintenance_work_mem": "1GB",
        "checkpoint_completion_target": "0.9",
        "wal_buffers": "16MB",
        "default_statistics_target": "100",
        "random_page_cost": "4",
        "effective_io_concurrency": "2",
        "work_mem": "20164kB",
        "huge_pages": "try",
        "min_wal_size": "2GB",
        "max_wal_size": "8GB",
        "max_worker_processes": "8",
        "max_parallel_workers_per_gather": "4",
        "max_parallel_workers": "8",
        "max_parallel_maintenance_workers": "4",
    }


def test_dw_64gb_16cpu_san() -> None:
    # maintenance_work_mem = total/8 = 8GB (the 8GB cap); default_statistics_target 500;
    # dw on SAN (not hdd, DB not smaller than RAM) -> random_page_cost 4;
    # work_mem = (67108864 - 16777216) / ((40 + 16) * 3) / 2 = 149796.6 -> 149796kB;
    # dw does not cap workers_per_gather at 4: ceil(16/2) = 8.
    assert pgtune(65536, 16, max_connections=40, storage="san", db_type="dw", pg_version=17) == {
        "max_connections": "40",
        "shared_buffers": "16GB",
        "effective_cache_size": "48GB",
        "maintenance_work_mem": "8GB",
        "checkpoint_completion_target": "0.9",
        "wal_buffers": "16MB",
        "default_statistics_target": "500",
        "random_page_cost": "4",
        "effective_io_concurrency": "300",
        "work_mem": "149796kB",
        "huge_pages": "try",
        "min_wal_size": "4GB",
        "max_wal_size": "16GB",
        "max_worker_processes": "16",
        "max_parallel_workers_per_gather": "8",
        "max_parallel_workers": "16",
        "max_parallel_maintenance_workers": "4",
    }


def test_desktop_1gb_1cpu() -> None:
    # desktop: shared_buffers = total/16 = 64MB, effective_cache_size = total/4;
    # wal_buffers = floor(3 * 65536 / 100) = 1966kB;
    # work_mem = (1048576 - 65536) / ((20 + 8) * 3) / 6 = 1950.5 -> raised to the 4MB floor.
    assert pgtune(1024, 1, max_connections=20, db_type="desktop", pg_version=15) == {
        "max_connections": "20",
        "shared_buffers": "64MB",
        "effective_cache_size": "256MB",
        "maintenance_work_mem": "64MB",
        "checkpoint_completion_target": "0.9",
        "wal_buffers": "1966kB",
        "default_statistics_target": "100",
        "random_page_cost": "1.1",
        "effective_io_concurrency": "200",
        "work_mem": "4MB",
        "huge_pages": "off",
        "min_wal_size": "100MB",
        "max_wal_size": "2GB",
        "max_worker_processes": "8",
        "max_parallel_workers_per_gather": "2",
        "max_parallel_workers": "8",
        "max_parallel_maintenance_workers": "2",
    }


def test_mixed_8gb_4cpu_with_db_size() -> None:
    # mixed: work_mem halved; (8388608 - 2097152) / ((100 + 4) * 3) / 2 = 10082.4 -> 10082;
    # less_ram: * 1.3 -> 13106kB and random_page_cost 1.1; greater_ram: * 0.9 -> 9073kB.
    less = pgtune(8192, 4, max_connections=100, db_type="mixed", db_size="less_ram")
    assert less["work_mem"] == "13106kB"
    assert less["random_page_cost"] == "1.1"
    assert less["huge_pages"] == "try"  # shared_buffers 2GB reaches the threshold
    greater = pgtune(8192, 4, max_connections=100, db_type="mixed", db_size="greater_ram")
    assert greater["work_mem"] == "9073kB"
    assert pgtune(8192, 4, max_connections=100, db_type="mixed")["work_mem"] == "10082kB"


def test_wal_buffers_small_memory_and_nvme() -> None:
    # 2GB web: 3% of 512MB = 15728kB, between 14MB and 16MB -> rounded up to 16MB.
    settings = pgtune(2048, 4, storage="nvme")
    assert settings["wal_buffers"] == "16MB"
    assert settings["effective_io_concurrency"] == "1000"
    # 512MB web: 3% of 128MB = 3932kB.
    assert pgtune(512, 1)["wal_buffers"] == "3932kB"


def test_pg10_has_no_parallel_maintenance_workers() -> None:
    assert "max_parallel_maintenance_workers" not in pgtune(8192, 8, pg_version=10)
    assert pgtune(8192, 8, pg_version=11)["max_parallel_maintenance_workers"] == "4"


def test_accepts_numeric_strings_and_case() -> None:
    assert pgtune("4096", "2", storage="SSD", db_type="Web") == pgtune(4096, 2)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            (0, 2),
            {},
            r"memory_mb must be a positive integer, got 0.*ansible_memtotal_mb",
        ),
        ((-5, 2), {}, r"memory_mb must be a positive integer"),
        ((True, 2), {}, r"memory_mb must be a positive integer"),
        ((4096, 0), {}, r"cpus must be a positive integer"),
        (
            (4096, 2),
            {"max_connections": 0},
            r"max_connections must be a positive integer",
        ),
        (
            (4096, 2),
            {"storage": "tape"},
            r"unknown storage 'tape'; set storage to one of: ssd, hdd",
        ),
        (
            (4096, 2),
            {"db_type": "olap"},
            r"unknown db_type 'olap'; set db_type to one of: web",
        ),
        (
            (4096, 2),
            {"pg_version": 9},
            r"pg_version 9 is not supported; .* between 10 and 18",
        ),
        ((4096, 2), {"db_size": "huge"}, r"unknown db_size 'huge'"),
    ],
)
def test_bad_input(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        pgtune(*args, **kwargs)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("256MB", 256 * 1024**2),
        ("1GB", 1024**3),
        ("64kB", 64 * 1024),
        ("5041kB", 5041 * 1024),
        ("2 TB", 2 * 1024**4),
        ("1024", 1024),
        ("8B", 8),
        (4096, 4096),
        ("1.5GB", 3 * 512 * 1024**2),
    ],
)
def test_pg_size_bytes(value: Any, expected: int) -> None:
    assert pg_size_bytes(value) == expected


@pytest.mark.parametrize("value", ["", "MB", "12XB", "-1MB", None, [1], True])
def test_pg_size_bytes_rejects(value: Any) -> None:
    with pytest.raises(AnsibleFilterError, match="pg_size_bytes"):
        pg_size_bytes(value)


def test_floor_raises_only_below() -> None:
    settings = pgtune(1024, 1, max_connections=20, db_type="desktop")  # shared_buffers 64MB
    floored = pgtune_floor(
        settings,
        {
            "shared_buffers": "256MB",
            "effective_cache_size": "128MB",  # already 256MB: unchanged
            "work_mem": "8192kB",
            "max_connections": 200,
            "maintenance_work_mem": "1GB",
        },
    )
    assert floored["shared_buffers"] == "256MB"
    assert floored["effective_cache_size"] == "256MB"
    assert floored["work_mem"] == "8MB"  # printed as PGTune would
    assert floored["max_connections"] == "200"
    assert floored["maintenance_work_mem"] == "1GB"
    assert floored["wal_buffers"] == settings["wal_buffers"]
    assert settings["shared_buffers"] == "64MB"  # input not modified


def test_floor_compares_bytes_not_text() -> None:
    # "1GB" > "512MB" although the string "1GB" < "512MB"
    assert pgtune_floor({"shared_buffers": "1GB"}, {"shared_buffers": "512MB"}) == {"shared_buffers": "1GB"}
    assert pgtune_floor({"shared_buffers": "1GB"}, {"shared_buffers": "2GB"}) == {"shared_buffers": "2GB"}
    assert pgtune_floor({"max_connections": "300"}, {"max_connections": 200}) == {"max_connections": "300"}
    assert pgtune_floor({"a": "1"}, None) == {"a": "1"}


@pytest.mark.parametrize(
    ("floors", "message"),
    [
        (
            {"shared_bufers": "256MB"},
            r"floor given for 'shared_bufers'.*not in the settings",
        ),
        (
            {"shared_buffers": 256},
            r"floor for shared_buffers must be a size with a unit",
        ),
        (
            {"shared_buffers": "256XB"},
            r"floor for shared_buffers must be a size with a unit",
        ),
        ({"shared_buffers": "1000B"}, r"whole number of kB"),
        ({"max_connections": "lots"}, r"floor for max_connections must be a number"),
        ({"huge_pages": 1}, r"setting huge_pages must be a number"),
        (["shared_buffers"], r"floors must be a dict"),
    ],
)
def test_floor_errors(floors: Any, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        pgtune_floor(pgtune(4096, 2), floors)


def test_filter_module() -> None:
    filters = pgtune_mod.FilterModule().filters()
    assert set(filters) == {"pgtune", "pgtune_floor", "pg_size_bytes"}
    assert filters["pgtune"] is pgtune


@pytest.mark.parametrize("name", ["DOCUMENTATION", "EXAMPLES", "RETURN"])
def test_plugin_docs_are_yaml(name: str) -> None:
    assert yaml.safe_load(getattr(pgtune_mod, name))
