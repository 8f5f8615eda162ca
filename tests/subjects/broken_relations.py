"""``broken``: a subject whose metamorphic relations fail, for the tests of their reproducers (tests/test_cli.py,
tests/test_plugin.py):

    python -m conformance run --adapter tests/subjects/broken_relations.py:load --cases tests/subjects/broken_relations.yaml

Its fused loss is 1 % too large for x > 0 (so symmetry fails, and vs-fused against the two-step path) and its
sum 1 % too large (mean-vs-sum fails). Its reproducers import this module and print what evaluate() returns."""

from __future__ import annotations

import ast
import os

import numpy as np

from conformance.adapters import Api, Framework

HERE = os.path.dirname(os.path.abspath(__file__))


def fused(inputs, reduction):
    x, y = inputs["logits"], inputs["target"]
    loss = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    loss = np.where(x > 0, loss * 1.01, loss)
    return np.asarray({"none": loss, "mean": np.mean(loss), "sum": np.sum(loss) * 1.01}[reduction], dtype=x.dtype)


def two_step(inputs, reduction):
    x, y = inputs["logits"], inputs["target"]
    p = 1 / (1 + np.exp(-x))
    loss = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    return np.asarray({"none": loss, "mean": np.mean(loss), "sum": np.sum(loss)}[reduction], dtype=x.dtype)


CALLS = {"broken.fused": fused, "broken.two_step": two_step}


def evaluate(name, args, dtype, reduction):
    """What a reproducer prints: the API's result on the reproducer's hex inputs."""
    inputs = {("logits" if k == "input" else k): np.array([float.fromhex(h) for h in ast.literal_eval(v)], dtype=dtype) for k, v in args.items()}
    return CALLS[name](inputs, reduction).tolist()


def repro(name):
    return lambda args, dtype, reduction: (
        f"import sys; sys.path.insert(0, {HERE!r}); import broken_relations; print(broken_relations.evaluate({name!r}, {args!r}, {dtype!r}, {reduction!r}))"
    )


def load():
    apis = [
        Api("broken.fused", "broken", "bce_with_logits", fused, "numpy", repro("broken.fused"), dtypes=("float64",)),
        Api("broken.two_step", "broken", "sigmoid_bce", two_step, "numpy", repro("broken.two_step"), dtypes=("float64",)),
    ]
    return Framework("broken", {"broken": "1"}, apis)
