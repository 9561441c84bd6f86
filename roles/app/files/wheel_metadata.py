#!/usr/bin/env python3
"""Print a wheel's name, version and runtime requirements as JSON.

Runs on the control node (the app role's artefact step): the version names the
release directory and the requirements (without extras) feed `pip download`.
"""

from __future__ import annotations

import email.parser
import json
import sys
import zipfile


def metadata(path: str) -> dict[str, object]:
    with zipfile.ZipFile(path) as wheel:
        names = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1]
        if len(names) != 1:
            raise SystemExit(f"{path}: not a wheel (expected one *.dist-info/METADATA, found {len(names)})")
        msg = email.parser.Parser().parsestr(wheel.read(names[0]).decode("utf-8"))
    requires = [r for r in msg.get_all("Requires-Dist") or [] if "extra ==" not in r.replace('"', "'")]
    return {"name": msg["Name"], "version": msg["Version"], "requires": sorted(requires)}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: wheel_metadata.py WHEEL")
    print(json.dumps(metadata(sys.argv[1])))
