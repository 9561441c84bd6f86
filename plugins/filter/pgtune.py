# Copyright: aiinfra.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL tuning filters following PGTune's formulas.

The formulas are a Python re-implementation of the selectors in PGTune
(https://github.com/le0pard/pgtune, ``src/features/configuration/configurationSlice.js``,
master as of commit 7caef27, 2026), for a Linux server.  Values are printed the way
PGTune's ``formatValue`` prints them (``src/common/components/configurationView/index.jsx``):
``GB`` when the kB value is a whole number of GB, else ``MB`` when a whole number of MB,
else ``kB``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped,unused-ignore]

DOCUMENTATION = r"""
name: pgtune
short_description: PostgreSQL settings computed with PGTune's formulas
description:
  - Returns a dict of C(postgresql.conf) settings (all values strings, memory values with
    units as PGTune prints them) for a Linux server with the given memory and CPUs.
  - Re-implements PGTune's selectors (le0pard/pgtune,
    src/features/configuration/configurationSlice.js).
  - When O(cpus) is below 4 PGTune prints no parallel settings; this filter then returns
    the PostgreSQL defaults for them (8/2/8/2) so that the keys are always present.
  - Companion filters in this file are C(pgtune_floor) (raise settings to minimums) and
    C(pg_size_bytes) (parse C(256MB) into bytes).
options:
  _input:
    description: Total memory of the server in MiB (e.g. C(ansible_memtotal_mb)).
    type: int
    required: true
  cpus:
    description: Number of CPUs (e.g. C(ansible_processor_vcpus)).
    type: int
    required: true
  max_connections:
    description: Expected maximum number of client connections.
    type: int
    default: 200
  storage:
    description: Data storage type.
    type: str
    choices: [ssd, hdd, san, nvme]
    default: ssd
  db_type:
    description: Workload type.
    type: str
    choices: [web, oltp, dw, desktop, mixed]
    default: web
  pg_version:
    description: PostgreSQL major version (10-18).
    type: int
    default: 15
  db_size:
    description: Database size compared with RAM (PGTune's "DB size" field).
    type: str
    choices: [less_ram, mid_ram, greater_ram]
    default: mid_ram
"""

EXAMPLES = r"""
- name: Compute PostgreSQL settings
  ansible.builtin.set_fact:
    postgres_tuned: >-
      {{ ansible_memtotal_mb | aiinfra.platform.pgtune(ansible_processor_vcpus,
           max_connections=200, storage='ssd', db_type='web', pg_version=16)
         | aiinfra.platform.pgtune_floor({'shared_buffers': '128MB'}) }}

- name: Bytes of a PostgreSQL size
  ansible.builtin.debug:
    msg: "{{ '256MB' | aiinfra.platform.pg_size_bytes }}"  # 268435456
"""

RETURN = r"""
_value:
  description:
    - "Settings keyed by name, e.g. C(shared_buffers: 1GB), C(work_mem: 5041kB)."
    - C(pg_size_bytes) returns an integer number of bytes.
  type: dict
"""

KB_PER_MB = 1024
KB_PER_GB = 1024 * 1024

DB_TYPES = ("web", "oltp", "dw", "desktop", "mixed")
STORAGE_TYPES = ("ssd", "hdd", "san", "nvme")
DB_SIZES = ("less_ram", "mid_ram", "greater_ram")
PG_VERSIONS = range(10, 19)

# PostgreSQL's own defaults, used by PGTune for work_mem when it prints no parallel settings.
_PG_DEFAULT_PARALLEL = {
    "max_worker_processes": 8,
    "max_parallel_workers_per_gather": 2,
    "max_parallel_workers": 8,
    "max_parallel_maintenance_workers": 2,
}

MEMORY_SETTINGS = frozenset(
    {
        "shared_buffers",
        "effective_cache_size",
        "maintenance_work_mem",
        "wal_buffers",
        "work_mem",
        "min_wal_size",
        "max_wal_size",
    }
)

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "bytes": 1,
    "kb": 1024,
    "mb": 1024**2,
    "gb": 1024**3,
    "tb": 1024**4,
    "pb": 1024**5,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _format_kb(value_kb: int) -> str:
    """Format a kB amount like PGTune's formatValue."""
    if value_kb % KB_PER_GB == 0:
        return f"{value_kb // KB_PER_GB}GB"
    if value_kb % KB_PER_MB == 0:
        return f"{value_kb // KB_PER_MB}MB"
    return f"{value_kb}kB"


def _js_number(value: float) -> str:
    """Print a number like JavaScript does (4.0 -> '4', 1.1 -> '1.1')."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _positive_int(value: Any, name: str, hint: str) -> int:
    if isinstance(value, bool):
        raise AnsibleFilterError(f"pgtune: {name} must be a positive integer, got {value!r}; {hint}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        raise AnsibleFilterError(f"pgtune: {name} must be a positive integer, got {value!r}; {hint}")
    return value


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise AnsibleFilterError(f"pgtune: unknown {name} {value!r}; set {name} to one of: {', '.join(choices)}")
    return str(text)


def pg_size_bytes(value: Any) -> int:
    """Parse a PostgreSQL size ('256MB', '1GB', '64kB', '1024') into bytes.

    Like PostgreSQL's pg_size_bytes(), a number without a unit is bytes and units are
    powers of 1024. Units are accepted case-insensitively.
    """
    if isinstance(value, bool):
        raise AnsibleFilterError(f"pg_size_bytes: expected a size like '256MB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise AnsibleFilterError(f"pg_size_bytes: size must not be negative, got {value!r}")
        return value
    if not isinstance(value, str):
        raise AnsibleFilterError(f"pg_size_bytes: expected a size like '256MB' or an integer of bytes, got {value!r}")
    match = _SIZE_RE.match(value)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise AnsibleFilterError(
            f"pg_size_bytes: cannot parse size {value!r}; write a number with an optional unit "
            "B, kB, MB, GB or TB, e.g. '256MB'"
        )
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:  # pragma: no cover - regex guarantees a number
        raise AnsibleFilterError(f"pg_size_bytes: cannot parse size {value!r}") from exc
    return int(number * _SIZE_UNITS[unit])


def pgtune(
    memory_mb: Any,
    cpus: Any,
    *,
    max_connections: Any = 200,
    storage: str = "ssd",
    db_type: str = "web",
    pg_version: Any = 15,
    db_size: str = "mid_ram",
) -> dict[str, str]:
    """Compute postgresql.conf settings with PGTune's formulas (Linux)."""
    memory_mb = _positive_int(
        memory_mb,
        "memory_mb",
        "pass the server memory in MiB, e.g. ansible_memtotal_mb",
    )
    cpus = _positive_int(cpus, "cpus", "pass the CPU count, e.g. ansible_processor_vcpus")
    connections = _positive_int(
        max_connections,
        "max_connections",
        "set max_connections to the expected client count",
    )
    storage = _choice(storage, "storage", STORAGE_TYPES)
    db_type = _choice(db_type, "db_type", DB_TYPES)
    db_size = _choice(db_size, "db_size", DB_SIZES)
    version = _positive_int(pg_version, "pg_version", "set pg_version to a major version 10-18")
    if version not in PG_VERSIONS:
        raise AnsibleFilterError(
            f"pgtune: pg_version {version} is not supported; set pg_version to a major "
            f"version between {PG_VERSIONS.start} and {PG_VERSIONS.stop - 1}"
        )

    total_kb = memory_mb * KB_PER_MB

    # shared_buffers: 1/4 of RAM (1/16 for desktop)
    shared_buffers = total_kb // 16 if db_type == "desktop" else total_kb // 4

    # effective_cache_size: 3/4 of RAM (1/4 for desktop)
    effective_cache_size = total_kb // 4 if db_type == "desktop" else (total_kb * 3) // 4

    # maintenance_work_mem: 1/16 of RAM (1/8 for dw), capped at 8GB on Linux
    maintenance_work_mem = total_kb // 8 if db_type == "dw" else total_kb // 16
    maintenance_work_mem = min(maintenance_work_mem, 8 * KB_PER_GB)

    # wal_buffers: 3% of shared_buffers, max 16MB, rounded up to 16MB above 14MB, min 32kB
    wal_buffers = min((3 * shared_buffers) // 100, 16 * KB_PER_MB)
    if 14 * KB_PER_MB < wal_buffers < 16 * KB_PER_MB:
        wal_buffers = 16 * KB_PER_MB
    wal_buffers = max(wal_buffers, 32)

    default_statistics_target = 500 if db_type == "dw" else 100

    if db_size == "less_ram":
        random_page_cost = 1.1
    elif storage == "hdd" or db_type == "dw":
        random_page_cost = 4.0
    else:
        random_page_cost = 1.1

    effective_io_concurrency = {"hdd": 2, "ssd": 200, "san": 300, "nvme": 1000}[storage]

    # parallel settings: PGTune prints them only for 4+ CPUs
    parallel: dict[str, int] = {}
    if cpus >= 4:
        per_gather = math.ceil(cpus / 2)
        if db_type != "dw":
            per_gather = min(per_gather, 4)
        parallel = {
            "max_worker_processes": cpus,
            "max_parallel_workers_per_gather": per_gather,
            "max_parallel_workers": cpus,
            "max_parallel_maintenance_workers": min(math.ceil(cpus / 2), 4),
        }
        workers_for_work_mem = cpus
    else:
        parallel = dict(_PG_DEFAULT_PARALLEL)
        workers_for_work_mem = _PG_DEFAULT_PARALLEL["max_worker_processes"]
    if version < 11:
        parallel.pop("max_parallel_maintenance_workers")

    # work_mem: (RAM - shared_buffers) / ((max_connections + max_worker_processes) * 3),
    # computed in floating point exactly as PGTune does (IEEE doubles, same operation order)
    work_mem_value = (total_kb - shared_buffers) / ((connections + workers_for_work_mem) * 3)
    divisor = {"web": 1, "oltp": 1, "dw": 2, "desktop": 6, "mixed": 2}[db_type]
    work_mem = math.floor(work_mem_value if divisor == 1 else work_mem_value / divisor)
    if db_size == "less_ram":
        work_mem = math.floor(work_mem * 1.3)
    elif db_size == "greater_ram":
        work_mem = math.floor(work_mem * 0.9)
    work_mem = max(work_mem, 4 * KB_PER_MB)

    huge_pages = "try" if shared_buffers >= 2 * KB_PER_GB else "off"

    min_wal_mb = {"web": 1024, "oltp": 2048, "dw": 4096, "desktop": 100, "mixed": 1024}[db_type]
    max_wal_mb = {
        "web": 4096,
        "oltp": 8192,
        "dw": 16384,
        "desktop": 2048,
        "mixed": 4096,
    }[db_type]

    settings: dict[str, str] = {
        "max_connections": str(connections),
        "shared_buffers": _format_kb(shared_buffers),
        "effective_cache_size": _format_kb(effective_cache_size),
        "maintenance_work_mem": _format_kb(maintenance_work_mem),
        "checkpoint_completion_target": "0.9",
        "wal_buffers": _format_kb(wal_buffers),
        "default_statistics_target": str(default_statistics_target),
        "random_page_cost": _js_number(random_page_cost),
        "effective_io_concurrency": str(effective_io_concurrency),
        "work_mem": _format_kb(work_mem),
        "huge_pages": huge_pages,
        "min_wal_size": _format_kb(min_wal_mb * KB_PER_MB),
        "max_wal_size": _format_kb(max_wal_mb * KB_PER_MB),
    }
    settings.update({key: str(value) for key, value in parallel.items()})
    return settings


def _as_number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise AnsibleFilterError(f"pgtune_floor: {what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"pgtune_floor: {what} must be a number, got {value!r}") from exc


def _size_or_error(value: Any, what: str, *, unit_required: bool) -> int:
    unitless = isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())
    try:
        if unit_required and unitless:
            raise ValueError(value)
        return pg_size_bytes(value)
    except (AnsibleFilterError, ValueError) as exc:
        raise AnsibleFilterError(
            f"pgtune_floor: {what} must be a size with a unit like '256MB', got {value!r}"
        ) from exc


def pgtune_floor(settings: Mapping[str, Any], floors: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a copy of settings where each listed setting is at least its floor.

    Memory settings are compared in bytes (floors need a unit, e.g. '256MB'); other
    settings (max_connections, ...) are compared as numbers.
    """
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError(
            f"pgtune_floor: input must be the dict returned by pgtune, got {type(settings).__name__}"
        )
    if floors is None:
        return dict(settings)
    if not isinstance(floors, Mapping):
        raise AnsibleFilterError(
            f"pgtune_floor: floors must be a dict like {{'shared_buffers': '256MB'}}, got {type(floors).__name__}"
        )
    result = dict(settings)
    for key, floor in floors.items():
        if key not in result:
            raise AnsibleFilterError(
                f"pgtune_floor: floor given for {key!r}, which is not in the settings; "
                f"use one of: {', '.join(sorted(result))}"
            )
        if key in MEMORY_SETTINGS:
            floor_bytes = _size_or_error(floor, f"floor for {key}", unit_required=True)
            if floor_bytes % 1024:
                raise AnsibleFilterError(f"pgtune_floor: floor for {key} ({floor!r}) must be a whole number of kB")
            current_bytes = _size_or_error(result[key], f"setting {key}", unit_required=False)
            if current_bytes < floor_bytes:
                result[key] = _format_kb(floor_bytes // 1024)
        else:
            floor_num = _as_number(floor, f"floor for {key}")
            current = _as_number(result[key], f"setting {key}")
            if current < floor_num:
                result[key] = _js_number(floor_num)
    return result


class FilterModule:
    """PGTune filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "pgtune": pgtune,
            "pgtune_floor": pgtune_floor,
            "pg_size_bytes": pg_size_bytes,
        }
