"""Figures the fault tests measure for docs/operations.md (never asserted on: no test depends
on elapsed time). ``KX_FAULT_FIGURES=path`` appends them there as JSON lines."""

from __future__ import annotations

import json
import os
import sys


def report(name: str, value: float | int) -> None:
    value = round(value, 3) if isinstance(value, float) else value
    line = json.dumps({"figure": name, "value": value})
    path = os.environ.get("KX_FAULT_FIGURES")
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")
    print(line, file=sys.stderr)
