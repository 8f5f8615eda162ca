"""The reference's fast path against a naive per-element mpmath loop, on the same elements.

    python benchmarks/reference_throughput.py [--elements 20000] [--repeat 3]

For float16, bfloat16 and float32: n/3 logits of the dtype (a random sample of every finite value
for the 16-bit formats; for float32 half normal(0, 10), half spread over every binade) against
targets 0, 0.5 and 1, loss and gradient (`none`). The fast path is ``conformance.reference.reference``
(float64 with rigorous bounds, mpmath for the elements it cannot settle; the cache is not involved);
the naive loop evaluates each element once in mpmath at 2p + 64 bits and rounds it, which is less
than the mpmath path does (it checks each rounding at a second precision), so the ratio is a floor.
Target: the fast path at least 50x the naive loop's elements per second.

The naive loop is not a correct reference: without the second precision it misrounds gradients that
cancel (target 0.5, tiny |x|: (1-y)σ(x) - yσ(-x) loses every bit at 2p + 64 bits), which the
`same rounding` column counts. ``--mpmath-path`` adds the reference's own mpmath path
(``fast=False``, a per-element loop with Ziv's test), whose roundings the fast path must equal.
"""

from __future__ import annotations

import argparse
import time

import mpmath
import numpy as np
from _common import header, table, verdict

from conformance import reference as ref
from conformance.dtypes import FORMATS, round_to_format

TARGET = 50.0


def logits(dtype: str, count: int, rng) -> np.ndarray:
    fmt = FORMATS[dtype]
    if dtype == "float32":
        half = count // 2
        spread = np.ldexp(rng.uniform(1, 2, count - half), rng.integers(-149, 128, count - half))
        spread = np.where(rng.integers(0, 2, count - half) == 1, -spread, spread)
        values = np.concatenate([rng.normal(0, 10, half), spread])
    else:
        with np.errstate(invalid="ignore"):
            bits = np.arange(1 << 16, dtype=np.uint16).view(fmt.numpy_dtype).astype(np.float64)
        values = rng.choice(bits[np.isfinite(bits)], size=count, replace=False)
    with np.errstate(over="ignore"):
        return values.astype(fmt.numpy_dtype)


def naive(inputs: dict, fmt, gradient: bool) -> np.ndarray:
    """One mpmath evaluation per element at 2p + 64 bits, rounded to the dtype."""
    term = ref.bce_with_logits_grad if gradient else ref.bce_with_logits_term
    x = np.asarray(inputs["logits"], dtype=np.float64).ravel()
    y = np.asarray(inputs["target"], dtype=np.float64).ravel()
    one = mpmath.mpf(1)
    out = np.empty(x.size)
    with mpmath.workprec(2 * fmt.precision + 64):
        for i in range(x.size):
            out[i] = round_to_format(term(mpmath.mpf(float(x[i])), mpmath.mpf(float(y[i])), one, one), fmt)
    return out.reshape(np.shape(inputs["logits"]))


def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=20000, help="elements per dtype (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="fast-path repetitions, best taken (default 3)")
    parser.add_argument("--mpmath-path", action="store_true", help="also time the reference's mpmath path (slower)")
    args = parser.parse_args()
    header("reference throughput: fast path vs a naive per-element mpmath loop (same elements)")
    rng = np.random.default_rng(20261129)
    rows, fast_total, naive_total, elements_total = [], 0.0, 0.0, 0
    for dtype in ("float16", "bfloat16", "float32"):
        fmt = FORMATS[dtype]
        x = logits(dtype, args.elements // 3, rng)
        xs, ys = np.meshgrid(x, np.asarray([0, 0.5, 1], dtype=fmt.numpy_dtype), indexing="ij")
        inputs = {"logits": np.ascontiguousarray(xs), "target": np.ascontiguousarray(ys)}
        for gradient in (False, True):
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                value = ref.reference("bce_with_logits", inputs, "none", fmt, gradient=gradient)
                best = min(best, time.perf_counter() - start)
            start = time.perf_counter()
            slow = naive(inputs, fmt, gradient)
            slow_seconds = time.perf_counter() - start
            n = xs.size
            agree = int(np.sum(same(value.rounded, slow)))
            row = [
                dtype, "grad" if gradient else "value", f"{n:,}", f"{n / best:,.0f}", f"{n / slow_seconds:,.0f}",
                f"{slow_seconds / best:,.0f}x", f"{agree:,}/{n:,}",
            ]
            if args.mpmath_path:
                start = time.perf_counter()
                exact = ref.reference("bce_with_logits", inputs, "none", fmt, gradient=gradient, fast=False)
                path_seconds = time.perf_counter() - start
                row += [f"{n / path_seconds:,.0f}", f"{path_seconds / best:,.0f}x", f"{int(np.sum(same(value.rounded, exact.rounded))):,}/{n:,}"]
            rows.append(row)
            fast_total, naive_total, elements_total = fast_total + best, naive_total + slow_seconds, elements_total + n
    headers = ["dtype", "quantity", "elements", "fast elem/s", "naive elem/s", "ratio", "naive = fast"]
    if args.mpmath_path:
        headers += ["mpmath-path elem/s", "ratio", "mpmath path = fast"]
    print(table(headers, rows))
    ratio = naive_total / fast_total
    worst = min(float(r[5].rstrip("x").replace(",", "")) for r in rows)
    print()
    print(f"overall: fast {elements_total / fast_total:,.0f} elements/s, naive mpmath {elements_total / naive_total:,.0f} elements/s")
    print(f"ratio fast/naive overall: {ratio:,.0f}x (target >= {TARGET:.0f}x: {verdict(ratio >= TARGET)})")
    print(f"ratio fast/naive, lowest row: {worst:,.0f}x (target >= {TARGET:.0f}x: {verdict(worst >= TARGET)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
