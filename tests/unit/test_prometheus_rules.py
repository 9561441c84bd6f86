"""The prometheus role's alert rules: promtool unit tests for every rule, and
promtool refusing bad rules before they replace the live ones.

promtool comes from Debian's `prometheus` package on the control node (the
bootstrap installs it). The rules template is rendered with the role's
built-in `for` durations and thresholds, the values the rule tests in
roles/prometheus/files/tests/ are written for.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from infra.playbook import ansible_env

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "prometheus"
RULE_TESTS = sorted((ROLE / "files" / "tests").glob("*.yml"))
PROMTOOL = shutil.which("promtool")


def render_rules(overrides: dict[str, Any] | None = None) -> str:
    """The rules file as the role writes it (Ansible's trim_blocks, a comment filter)."""
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["comment"] = lambda text: f"#\n# {text}\n#"
    context = {
        "ansible_managed": "Ansible managed",
        "_prometheus_alert_for": {**role_vars["_prometheus_alert_for_builtin"], **(overrides or {})},
        "_prometheus_alert_thresholds": role_vars["_prometheus_alert_thresholds_builtin"],
    }
    return env.from_string((ROLE / "templates" / "aiinfra.rules.yml.j2").read_text()).render(context)


def alert_names(rules_text: str) -> set[str]:
    document = yaml.safe_load(rules_text)
    return {rule["alert"] for group in document["groups"] for rule in group["rules"] if "alert" in rule}


def alerts_with_firing_tests() -> set[str]:
    names: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            names |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    return names


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is missing on the control node: apt-get install prometheus"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_every_alert_has_a_firing_test() -> None:
    untested = alert_names(render_rules()) - alerts_with_firing_tests()
    assert not untested, f"alert rules without a promtool test that sees them fire: {sorted(untested)}"


def test_for_durations_come_from_variables() -> None:
    text = render_rules({"redis_down": "7s", "instance_down": "11s"})
    rules = {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}
    assert rules["RedisDown"]["for"] == "7s"
    assert rules["InstanceDown"]["for"] == "11s"


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    (tmp_path / "aiinfra.rules.yml").write_text(render_rules())
    res = promtool("check", "rules", "aiinfra.rules.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.stem)
def test_rule_unit_tests(tmp_path: Path, test_file: Path) -> None:
    (tmp_path / "aiinfra.rules.yml").write_text(render_rules())
    shutil.copy(test_file, tmp_path / test_file.name)
    res = promtool("test", "rules", test_file.name, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_a_rule_test_can_fail(tmp_path: Path) -> None:
    """The unit tests bite: with RedisDown's `for` at 10m the 4m expectation fails."""
    (tmp_path / "aiinfra.rules.yml").write_text(render_rules({"redis_down": "10m"}))
    shutil.copy(ROLE / "files" / "tests" / "redis.yml", tmp_path / "redis.yml")
    res = promtool("test", "rules", "redis.yml", cwd=tmp_path)
    assert res.returncode != 0
    assert "RedisDown" in res.stdout + res.stderr


PLAY = [
    {
        "name": "Prometheus rules",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Rules",
                "ansible.builtin.include_role": {"name": "aiinfra.platform.prometheus", "tasks_from": "rules"},
            },
            {"name": "Done", "ansible.builtin.debug": {"msg": "RULES WRITTEN"}},
        ],
    }
]


def test_invalid_rules_are_refused_and_nothing_is_replaced(tmp_path: Path) -> None:
    assert PROMTOOL is not None, "promtool is missing on the control node: apt-get install prometheus"
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    live = rules_dir / "aiinfra-extra.rules.yml"
    live.write_text("groups: []\n")
    bad = [{"name": "broken", "rules": [{"alert": "Broken", "expr": "rate(up[5m] > 1"}]}]
    extra = {"_prometheus_rules_dir": str(rules_dir), "prometheus_alert_rules_extra": bad}
    (tmp_path / "play.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    (tmp_path / "extra.yml").write_text(yaml.safe_dump(extra))
    bindir = Path(sys.executable).parent
    res = subprocess.run(
        [
            str(bindir / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-e",
            f"@{tmp_path / 'extra.yml'}",
            str(tmp_path / "play.yml"),
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "RULES WRITTEN" not in out
    assert "failed validation" in out or "parse error" in out, out
    assert live.read_text() == "groups: []\n"
    # The built-in rules, valid, were checked and written first.
    assert (rules_dir / "aiinfra.rules.yml").exists()
