"""roles/app/files/source_digest.py: the app role builds the wheel again only when
this digest of app_source_dir changes, so every change that can reach the wheel
must change it, and generated files must not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.playbook import REPO

SCRIPT = REPO / "roles" / "app" / "files" / "source_digest.py"


def digest(root: Path) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_the_digest_follows_the_source_and_ignores_generated_files(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "pkg"\nversion = "1.0"\n')
    (package / "main.py").write_text("print('a')\n")
    first = digest(tmp_path)
    assert len(first) == 64

    for generated in (".venv/lib/x.py", "src/pkg/__pycache__/main.pyc", ".mypy_cache/x", "pkg.egg-info/PKG-INFO"):
        (tmp_path / generated).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / generated).write_text("generated")
    assert digest(tmp_path) == first

    (package / "main.py").write_text("print('b')\n")
    changed = digest(tmp_path)
    assert changed != first
    # A file renamed with the same content is a change too.
    (package / "main.py").rename(package / "other.py")
    assert digest(tmp_path) not in (first, changed)
    (package / "other.py").rename(package / "main.py")
    assert digest(tmp_path) == changed
    (package / "new.py").write_text("")
    assert digest(tmp_path) != changed
