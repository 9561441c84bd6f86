"""Every role default has an argument spec, and every spec option a default or `required`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "roles").iterdir() if p.is_dir())


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) or {}


def test_there_are_roles() -> None:
    assert ROLES


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_and_specs_agree(role: Path) -> None:
    defaults = _load(role / "defaults" / "main.yml") if (role / "defaults" / "main.yml").exists() else {}
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    options: dict[str, Any] = specs["main"].get("options", {})
    undocumented = sorted(set(defaults) - set(options))
    assert not undocumented, f"{role.name}: defaults without an argument spec: {undocumented}"
    no_default = sorted(k for k, v in options.items() if k not in defaults and not v.get("required"))
    assert not no_default, f"{role.name}: spec options with neither a default nor required: true: {no_default}"
    required_with_default = sorted(k for k, v in options.items() if v.get("required") and k in defaults)
    assert not required_with_default, f"{role.name}: required options must not have defaults: {required_with_default}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_public_variables_are_prefixed(role: Path) -> None:
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    for entry, spec in specs.items():
        for name in spec.get("options", {}):
            assert name.startswith(f"{role.name}_"), f"{role.name}:{entry}: {name} lacks the {role.name}_ prefix"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_preflight_entry_point_validates_the_same_options(role: Path) -> None:
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    if "preflight" in specs:
        assert specs["preflight"]["options"] == specs["main"]["options"]


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_layout(role: Path) -> None:
    tasks = role / "tasks"
    for name in ("main.yml", "preflight.yml"):
        assert (tasks / name).exists(), f"{role.name}: tasks/{name} is missing"
