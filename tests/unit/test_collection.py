"""The collection builds, installs, and its playbooks run as aiinfra.platform.<name>."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_build_install_and_run_by_fqcn(tmp_path: Path) -> None:
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp_path, REPO],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (artifact,) = tmp_path.glob("aiinfra-platform-*.tar.gz")
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    assert "roles/base/tasks/main.yml" in names
    assert "playbooks/site.yml" in names
    assert "data/flows.yml" in names
    assert not [n for n in names if n.startswith((".venv", ".lab", "app/.venv", "collections/ansible_collections"))]

    dest = tmp_path / "installed"
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "install", "--offline", "--no-deps", "--force", "-p", dest, artifact],
        check=True,
        capture_output=True,
    )
    # Run from outside the checkout so only the installed collection can be found.
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(dest), "ANSIBLE_CONFIG": str(cfg)}
    res = subprocess.run(
        [BIN / "ansible-playbook", "-i", REPO / "inventories" / "lab", "--syntax-check", "aiinfra.platform.site"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
