#!/usr/bin/env python3
"""Print a SHA-256 of a source tree: every file's path and content, in path order.

Runs on the control node (the app role's artefact step): the wheel is built
again only when this changes. Generated directories (virtualenvs, caches, build
output) are left out; any other file counts, even one the wheel does not hold,
so a change can only cause a build too many, never one too few.
"""

from __future__ import annotations

import hashlib
import os
import sys

SKIPPED = {".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules", "build", "dist"}


def digest(root: str) -> str:
    files: list[str] = []
    for top, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED and not d.endswith(".egg-info")]
        files += [os.path.relpath(os.path.join(top, name), root) for name in names]
    total = hashlib.sha256()
    for rel in sorted(files):
        total.update(rel.encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as source:
            total.update(hashlib.sha256(source.read()).digest())
    return total.hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: source_digest.py SOURCE_DIR")
    print(digest(sys.argv[1]))
