"""A third-party bce-conformance adapter, written from scratch: BCE in pure Python with `math`.

Python's float is IEEE binary64, so this adapter takes float64 only; the runner reports the
other dtypes as `unsupported`, with the reason. Run it with

    python -m conformance run --adapter examples/adapters/python_math_adapter.py:load --cases cases
"""

from __future__ import annotations

import math
import platform

import numpy as np

from conformance.adapters import Api, Framework

NAME = "python_math"


def softplus(z: float) -> float:
    """log(1 + exp(z)) as max(z, 0) + log1p(exp(-|z|)): exp never overflows."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def neg_log(v: float) -> float:
    """-log(v), +inf at 0 (math.log(0) raises)."""
    return math.inf if v == 0 else -math.log(v)


def neg_log1p(v: float) -> float:
    """-log1p(v), +inf at -1 (math.log1p(-1) raises)."""
    return math.inf if v == -1 else -math.log1p(v)


def term(coefficient: float, loss: float) -> float:
    """coefficient · loss, where a zero coefficient gives 0 even for an infinite loss (the limit)."""
    return 0.0 if coefficient == 0 else coefficient * loss


def bce_with_logits(x: float, y: float, w: float) -> float:
    """w · (y·softplus(-x) + (1-y)·softplus(x)): two terms that are never negative, so no cancellation."""
    return w * (term(y, softplus(-x)) + term(1.0 - y, softplus(x)))


def bce(p: float, y: float, w: float) -> float:
    """w · (y·(-log p) + (1-y)·(-log(1-p)))."""
    return w * (term(y, neg_log(p)) + term(1.0 - y, neg_log1p(-p)))


def reduce(losses: list[float], reduction: str) -> float | list[float]:
    """math.fsum is exact and rounds once; the mean divides that sum by n (a second rounding)."""
    if reduction == "sum":
        return math.fsum(losses)
    if reduction == "mean":
        return math.fsum(losses) / len(losses)
    return losses


def make_call(loss, first: str):
    """call(inputs, reduction): the loss of every element, in Python floats, then the reduction."""

    def call(inputs: dict[str, np.ndarray], reduction: str) -> np.ndarray:
        weight = inputs.get("weight", np.float64(1.0))
        x, y, w = np.broadcast_arrays(inputs[first], inputs["target"], weight)
        losses = [loss(*element) for element in zip(x.ravel().tolist(), y.ravel().tolist(), w.ravel().tolist())]
        result = reduce(losses, reduction)
        shape = x.shape if reduction == "none" else ()
        return np.asarray(result, dtype=np.float64).reshape(shape)

    return call


PRELUDE = (
    "import math, itertools; t = lambda v: [float.fromhex(h) for h in v]; "
    "sp = lambda z: max(z, 0.0) + math.log1p(math.exp(-abs(z))); "
    "nl = lambda v: math.inf if v == 0 else -math.log(v); "
    "nl1p = lambda v: math.inf if v == -1 else -math.log1p(v); "
    "f = lambda c, l: 0.0 if c == 0 else c * l"
)
ELEMENT = {
    "bce_with_logits": "w * (f(y, sp(-x)) + f(1.0 - y, sp(x)))",
    "bce": "w * (f(y, nl(x)) + f(1.0 - y, nl1p(-x)))",
}
REDUCE = {"none": "{}", "sum": "math.fsum({})", "mean": "(lambda v: math.fsum(v) / len(v))({})"}


def make_repro(op: str):
    """One line of Python (no numpy, no adapter) that computes the same values from hex floats."""

    def repro(args: dict[str, str], dtype: str, reduction: str) -> str:
        w = f"t({args['weight']})" if "weight" in args else "itertools.repeat(1.0)"
        losses = f"[{ELEMENT[op]} for x, y, w in zip(t({args['input']}), t({args['target']}), {w})]"
        return f"{PRELUDE}; print({REDUCE[reduction].format(losses)})"

    return repro


def load() -> Framework:
    """The adapter's entry point: a zero-argument callable that returns the Framework."""
    common = dict(
        framework=NAME,
        reduced_by="math.fsum (sum); math.fsum / n (mean)",
        dtypes=("float64",),  # Python floats are binary64; float16, bfloat16 and float32 are unsupported
    )
    apis = [
        Api(
            name=f"{NAME}.bce_with_logits",
            op="bce_with_logits",
            call=make_call(bce_with_logits, "logits"),
            repro=make_repro("bce_with_logits"),
            unsupported={
                "pos_weight": f"{NAME}.bce_with_logits has no pos_weight argument",
                "label_smoothing": f"{NAME}.bce_with_logits has no label_smoothing argument",
            },
            **common,
        ),
        Api(
            name=f"{NAME}.bce",
            op="bce",
            call=make_call(bce, "probs"),
            repro=make_repro("bce"),
            unsupported={"label_smoothing": f"{NAME}.bce has no label_smoothing argument"},
            **common,
        ),
    ]
    return Framework(name=NAME, versions={"python": platform.python_version()}, apis=apis)
