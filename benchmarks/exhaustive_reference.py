"""The reference for the whole exhaustive float16 set: cold (cache off, and an empty cache) and cached.

    python benchmarks/exhaustive_reference.py

Every reference a conformance run asks for on the float16 cases of cases/exhaustive_16bit.yaml
(every finite float16 logit x targets 0, 0.5, 1: 190464 elements per case; each op, reduction, the
loss and, where the case checks it, the gradient), through the runner's ``ExactValues`` as a run
computes them. When the file is missing, the same inputs are generated (benchmarks/_common.py).
The case inputs are built before the clock starts: only the references are timed.

Also the references of the documented variants (torch's log_clamp(-100), Keras's prob_clip(1e-7)) for
the two-step op, which a run computes for an API that misses the exact value. ``--all-reductions``
adds mean and sum to cases that check `none` only.

- off:    CONFORMANCE_CACHE=off, the reference computed (the fast path, mpmath where it cannot settle)
- cold:   an empty cache folder: computed and stored (later references of the same content are hits)
- cached: the same folder, a fresh ExactValues (as a new process or run would have): read back

Targets (2 cores): cold <= 10 s, cached <= 0.5 s. The reference is single-threaded.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import float16_case_file, header, table, verdict

from conformance import cache
from conformance.cases import load_file
from conformance.dtypes import get_format
from conformance.reference import ReferenceError
from conformance.runner import ExactValues

COLD_TARGET, CACHED_TARGET = 10.0, 0.5
refused: dict[int, str] = {}  # references the reference declines (ReferenceError), by item


# The documented variants the built-in adapters declare (torch's BCELoss: log_clamp; Keras: prob_clip):
# a run computes their references for an API whose result misses the exact value.
VARIANT_SETS = (("log_clamp(-100)",), ("prob_clip(1e-7)",))


def references(cases, reductions=None):
    """(case, op, fmt, reduction, gradient, variants) for every reference a run may ask for, float16 only."""
    out = []
    for case in cases:
        for op in case.ops:
            for dtype in case.dtypes:
                if dtype != "float16":
                    continue
                for reduction in reductions or case.reductions:
                    for gradient in (False, True) if case.gradients else (False,):
                        out.append((case, op, get_format(dtype), reduction, gradient, None))
                        if op != "bce_with_logits":  # the fused loss has no variant
                            out += [(case, op, get_format(dtype), reduction, gradient, names) for names in VARIANT_SETS]
    return out


def timed(items, setting: str) -> tuple[float, list[float], ExactValues]:
    os.environ[cache.CACHE_ENV] = setting
    exact = ExactValues()
    for case, _, fmt, *_ in items:
        exact.inputs(case, fmt)  # the inputs are the case's, not the reference's: built untimed
    each = []
    start = time.perf_counter()
    for case, op, fmt, reduction, gradient, variants in items:
        t = time.perf_counter()
        try:
            if variants is None:
                exact.reference(case, op, fmt, reduction, gradient)
            else:
                exact.variant_reference(case, op, fmt, reduction, variants, gradient)
        except ReferenceError as exc:  # the run records it as the check's error
            refused[id(items[len(each)])] = str(exc).split(";")[0]
        each.append(time.perf_counter() - t)
    return time.perf_counter() - start, each, exact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all-reductions", action="store_true", help="none, mean and sum, whatever the cases say")
    args = parser.parse_args()
    header("exhaustive float16 reference: cold and cached")
    with tempfile.TemporaryDirectory(prefix="bce-bench-") as tmp:
        path, origin = float16_case_file(Path(tmp))
        cases = load_file(path)
        items = references(cases, ("none", "mean", "sum") if args.all_reductions else None)
        elements = sum(math.prod(case.shape) for case, *_ in items)
        print(f"cases: {origin}")
        print(f"{len(items)} references, {elements:,} elements in all\n")
        folder = Path(tmp) / "cache"
        off, off_each, _ = timed(items, "off")
        cold, cold_each, _ = timed(items, str(folder))
        cached, cached_each, _ = timed(items, str(folder))
        stored = sorted(folder.rglob("*.npz"))
        size = sum(p.stat().st_size for p in stored)
        rows = []
        for n, item in enumerate(items):
            case, op, fmt, reduction, gradient, variants = item
            rows.append([
                case.id, op, "+".join(variants) if variants else "-", fmt.name, reduction, "grad" if gradient else "value",
                f"{off_each[n]:.3f}", f"{cold_each[n]:.3f}", f"{cached_each[n]:.4f}", "refused" if id(item) in refused else "",
            ])
        print(table(["case", "op", "variant", "dtype", "reduction", "quantity", "off s", "cold s", "cached s", ""], rows))
        print()
        for reason in sorted(set(refused.values())):
            print(f"refused (ReferenceError, the check's error in a run): {reason}")
        print(f"cache: {len(stored)} entries, {size / 2**20:.1f} MiB (keyed by content: references of the same "
              "formula on the same inputs, e.g. the fused and two-step cases' loss, share one entry)")
        print(f"reference off (computed):     {off:.2f} s")
        print(f"reference cold (empty cache): {cold:.2f} s (target <= {COLD_TARGET:g} s: {verdict(cold <= COLD_TARGET)})")
        print(f"reference cached:             {cached:.3f} s (target <= {CACHED_TARGET:g} s: {verdict(cached <= CACHED_TARGET)})")
        print(f"ratio cold/cached: {cold / cached:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
