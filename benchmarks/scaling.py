"""The run's time at growing element counts: it should stay linear (a constant time per element).

    python benchmarks/scaling.py [--framework numpy] [--max-exponent 20]

One generated case per size n = 2**k + 1, k = 10, 12, ... 20 (1025 to 1048577 elements): logits
{linspace: [-64, 64, n]} against targets {linspace: [0, 1, n]} (dyadic steps: float64 values, no
rationals), float32, reductions none, mean and sum, loss and gradient, both logits ops. Each size is
a whole run of the framework's checks in this process: the plan (case loading and generation, the
checks), then every check (the framework's calls, the reference, judging), with the reference
cache off, so the reference is computed at every size. Prints the time per element at each size
and the ratio of the largest size's time per element to the smallest's (<= 1: linear or better;
the smallest pays fixed costs), and the same between the two largest sizes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import header, table

CASE = """\
schema_version: 1
description: scaling benchmark (benchmarks/scaling.py)
cases:
  - id: linspace-{n}
    why: {n} dyadic logits against dyadic targets
    dtypes: [float32]
    reductions: [none, mean, sum]
    logits: {{linspace: [-64, 64, {n}]}}
    target: {{linspace: [0, 1, {n}]}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", default="numpy")
    parser.add_argument("--min-exponent", type=int, default=10)
    parser.add_argument("--max-exponent", type=int, default=20)
    args = parser.parse_args()
    os.environ["CONFORMANCE_CACHE"] = "off"
    from conformance.runner import plan

    header(f"scaling: one {args.framework} run per size, reference cache off")
    rows, per_element = [], []
    with tempfile.TemporaryDirectory(prefix="bce-bench-") as tmp:
        plan(args.framework, [_write(Path(tmp), 1025)])  # imports and first calls out of the measurements
        for k in range(args.min_exponent, args.max_exponent + 1, 2):
            n = 2**k + 1
            path = _write(Path(tmp), n)
            start = time.perf_counter()
            run = plan(args.framework, [path])
            planned = time.perf_counter() - start
            verdicts = {}
            for check in run.checks:
                result = run.runner.run(check)
                verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
            total = time.perf_counter() - start
            per_element.append((n, total / n))
            rows.append([
                f"{n:,}", len(run.checks), f"{planned:.2f}", f"{total - planned:.2f}", f"{total:.2f}", f"{total / n * 1e6:.2f}",
                " ".join(f"{v}:{c}" for v, c in sorted(verdicts.items())),
            ])
            print(f"n = {n:,}: {total:.2f} s", flush=True)
    print()
    print(table(["elements", "checks", "plan s", "checks s", "total s", "us/element", "verdicts"], rows))
    print()
    (n0, t0), (n1, t1) = per_element[0], per_element[-1]
    print(f"ratio of time per element, {n1:,} vs {n0:,} elements: {t1 / t0:.2f} (<= 1: linear or better)")
    if len(per_element) > 2:
        (na, ta), (nb, tb) = per_element[-2], per_element[-1]
        print(f"ratio of time per element, {nb:,} vs {na:,} elements: {tb / ta:.2f} (about 1: linear)")
    return 0


def _write(folder: Path, n: int) -> Path:
    path = folder / f"scaling_{n}.yaml"
    path.write_text(CASE.format(n=n))
    return path


if __name__ == "__main__":
    sys.exit(main())
