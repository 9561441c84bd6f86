"""The app verifies Elasticsearch against the platform's internal CA (issue 10).

With elasticsearch hosts in the inventory and internal_ca_dir set, the role copies
internal_ca_dir/ca.crt to the host and the env file points APP_ES_CA_FILE at that
copy; without elasticsearch hosts (or without an internal CA) nothing is copied and
the env file has no APP_ES_CA_FILE line.
"""

from __future__ import annotations

from typing import Any

import pytest
from infra import app_env

CA_DIR = "/srv/platform-ca"
ON_HOST = "/etc/aiinfra-app/es-ca.crt"
ES = {"es1": {"platform_address": "192.0.2.31"}}
# case: (elasticsearch hosts, internal_ca_dir or None)
CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "es-and-ca": (ES, CA_DIR),
    "no-es": ({}, CA_DIR),
    "es-without-ca": (ES, None),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, str], str]]:
    """Per case: the APP_* settings of the rendered env file, and app_es_ca_src as the role resolves it."""
    out: dict[str, tuple[dict[str, str], str]] = {}
    for case, (es_hosts, ca_dir) in CASES.items():
        tmp = tmp_path_factory.mktemp(case)
        ca_vars = {} if ca_dir is None else {"internal_ca_dir": ca_dir}
        copy_src = {
            "name": "The control-node CA file the role copies",
            "ansible.builtin.copy": {"content": "{{ app_es_ca_src }}", "dest": f"{tmp}/ca_src"},
        }
        envs = app_env.render(tmp, app_env.inventory({"elasticsearch": es_hosts}, **ca_vars), {case: {}}, [copy_src])
        out[case] = (envs[case], (tmp / "ca_src").read_text())
    return out


def test_with_elasticsearch_and_the_internal_ca_the_app_verifies_against_its_copy(
    rendered: dict[str, tuple[dict[str, str], str]],
) -> None:
    env, ca_src = rendered["es-and-ca"]
    assert env["APP_ES_URL"] == "https://192.0.2.31:9200"
    assert env["APP_ES_CA_FILE"] == ON_HOST
    assert ca_src == f"{CA_DIR}/ca.crt"


def test_without_elasticsearch_hosts_no_ca_file(rendered: dict[str, tuple[dict[str, str], str]]) -> None:
    env, ca_src = rendered["no-es"]
    assert "APP_ES_URL" not in env
    assert "APP_ES_CA_FILE" not in env
    assert ca_src == ""
    assert env["APP_DATABASE_URL"]  # the rest is rendered as usual


def test_without_an_internal_ca_the_system_cas(rendered: dict[str, tuple[dict[str, str], str]]) -> None:
    env, ca_src = rendered["es-without-ca"]
    assert env["APP_ES_URL"] == "https://192.0.2.31:9200"
    assert "APP_ES_CA_FILE" not in env
    assert ca_src == ""
