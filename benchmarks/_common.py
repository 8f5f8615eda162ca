"""Shared by the benchmark scripts: the exhaustive float16 case set, the machine, tables."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXHAUSTIVE = REPO / "cases" / "exhaustive_16bit.yaml"

# The float16 cases of cases/exhaustive_16bit.yaml, for a checkout that does not have the file yet:
# every finite float16 logit against targets 0, 0.5 and 1 (63488 x 3 = 190464 elements).
GENERATED_EXHAUSTIVE = """\
schema_version: 1
description: every finite float16 logit against targets 0, 0.5 and 1 (benchmarks/_common.py)
defaults: {reductions: [none], sweep: true}
cases:
  - id: every-float16
    why: every finite float16 logit, fused loss and gradient
    dtypes: [float16]
    ops: [bce_with_logits]
    logits: {all_finite: float16}
    target: [0, 0.5, 1]
    product: true
  - id: every-float16-two-step
    why: the same elements through the two-step path, loss and gradient
    dtypes: [float16]
    ops: [sigmoid_bce]
    logits: {all_finite: float16}
    target: [0, 0.5, 1]
    product: true
"""


def float16_case_file(folder: Path) -> tuple[Path, str]:
    """A case file holding the exhaustive float16 cases, and where it came from.

    From cases/exhaustive_16bit.yaml when present: its cases with float16 among their dtypes, written
    to ``folder`` under the same file name (so that known divergences naming its cases still apply);
    else the generated equivalent above."""
    out = folder / "exhaustive_16bit.yaml"
    if not EXHAUSTIVE.exists():
        out.write_text(GENERATED_EXHAUSTIVE)
        return out, "generated (cases/exhaustive_16bit.yaml not found): every finite float16 logit x targets 0, 0.5, 1"
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    data = yaml.load(EXHAUSTIVE.read_text())
    defaults = data.get("defaults", {}) or {}
    kept = [case for case in data["cases"] if "float16" in case.get("dtypes", defaults.get("dtypes", ["float32", "float64"]))]
    data["cases"][:] = kept
    with out.open("w") as handle:
        yaml.dump(data, handle)
    ids = ", ".join(str(case["id"]) for case in kept)
    return out, f"cases/exhaustive_16bit.yaml, its float16 cases ({ids})"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cores()} cores ({cpu}), Python {platform.python_version()}, numpy {np.__version__}, {platform.system()}"


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if n and _numeric(c) else c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    try:
        float(text.rstrip("x×s%").replace(",", ""))
        return True
    except ValueError:
        return False


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


class Stopwatch:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def header(title: str) -> None:
    print(f"{title}\nmachine: {machine()}\n", flush=True)
    sys.stdout.flush()
