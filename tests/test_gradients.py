"""The exact gradients: closed forms, limits, agreement with a finite difference of the exact loss."""

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from conformance.adapters import Api, Framework
from conformance.cases import load_file
from conformance.dtypes import FORMATS, cast
from conformance.reference import bce_grad, bce_term, bce_with_logits_grad, bce_with_logits_term, reference
from conformance.runner import Check, Runner, enumerate_checks

F64 = FORMATS["float64"]
ONE = mpmath.mpf(1)


@pytest.mark.parametrize("y", [0, 0.25, 0.5, 1])
def test_logits_gradient_at_zero_is_one_half_minus_y(y):
    assert bce_with_logits_grad(mpmath.mpf(0), mpmath.mpf(y), ONE) == 0.5 - y


@pytest.mark.parametrize("x", [-40.0, -3.0, -0.5, 0.25, 7.0, 800.0])
def test_logits_gradient_symmetry_and_pos_weight(x):
    with mpmath.workprec(300):
        assert bce_with_logits_grad(mpmath.mpf(x), ONE, ONE) == -bce_with_logits_grad(mpmath.mpf(-x), mpmath.mpf(0), ONE)
        q = mpmath.mpf(3)  # d/dx of q·softplus(-x) is -q·sigmoid(-x)
        assert bce_with_logits_grad(mpmath.mpf(x), ONE, ONE, q) == q * bce_with_logits_grad(mpmath.mpf(x), ONE, ONE)


@pytest.mark.parametrize("x, y, expected", [(math.inf, 0.25, 0.75), (-math.inf, 0.25, -0.25), (math.inf, 1, 0), (-math.inf, 0, 0)])
def test_logits_gradient_limits(x, y, expected):
    assert bce_with_logits_grad(mpmath.mpf(x), mpmath.mpf(y), ONE) == expected


@pytest.mark.parametrize("x, y", [(0.3, 0.0), (-2.5, 1.0), (4.0, 0.75), (-30.0, 0.5)])
def test_logits_gradient_is_the_derivative_of_the_loss(x, y):
    with mpmath.workprec(400):
        h = mpmath.mpf(2) ** -120
        x, y = mpmath.mpf(x), mpmath.mpf(y)
        slope = (bce_with_logits_term(x + h, y, ONE, ONE) - bce_with_logits_term(x - h, y, ONE, ONE)) / (2 * h)
        assert abs(slope - bce_with_logits_grad(x, y, ONE)) < mpmath.mpf(2) ** -200


@pytest.mark.parametrize("p, y", [(0.3, 0.0), (0.9, 1.0), (0.5, 0.25), (1e-30, 0.5)])
def test_probability_gradient_is_the_derivative_of_the_loss(p, y):
    with mpmath.workprec(400):
        p, y = mpmath.mpf(p), mpmath.mpf(y)
        h = p * mpmath.mpf(2) ** -120
        slope = (bce_term(p + h, y, ONE) - bce_term(p - h, y, ONE)) / (2 * h)
        assert abs(slope / bce_grad(p, y, ONE) - 1) < mpmath.mpf(2) ** -150


def test_probability_gradient_limits_and_torch_floor():
    assert bce_grad(mpmath.mpf(0), mpmath.mpf(0), ONE) == 1  # (1-y)/(1-p) - y/p with 0·(1/0) = 0
    assert bce_grad(mpmath.mpf(1), ONE, ONE) == -1
    assert bce_grad(mpmath.mpf(0), mpmath.mpf(0.5), ONE) == -math.inf
    assert bce_grad(mpmath.mpf(0.5), mpmath.mpf(0), ONE) == 2
    floored = bce_grad(mpmath.mpf(0), mpmath.mpf(0.5), ONE, denominator_floor=mpmath.mpf(1e-12))
    assert floored == mpmath.mpf(-0.5) / mpmath.mpf(1e-12)


def test_mean_gradient_is_the_sum_gradient_over_n():
    x = cast([Fraction(v) for v in (0.1, -2.0, 5.0)], F64)
    y = cast([Fraction(v) for v in (0, 1, 0.5)], F64)
    total = reference("bce_with_logits", {"logits": x, "target": y}, "sum", F64, gradient=True)
    mean = reference("bce_with_logits", {"logits": x, "target": y}, "mean", F64, gradient=True)
    none = reference("bce_with_logits", {"logits": x, "target": y}, "none", F64, gradient=True)
    assert total.exact.shape == mean.exact.shape == (3,)
    assert all(a == b for a, b in zip(total.exact, none.exact))
    with mpmath.workprec(400):
        assert all(abs(m * 3 - t) < mpmath.mpf(2) ** -300 for m, t in zip(mean.exact, total.exact))


CASE = """\
schema_version: 1
description: gradient runner tests
cases:
  - id: ordinary
    why: a few logits
    logits: [-2.0, 0.5, 3.0]
    target: [0, 1, 0.5]
    dtypes: [float64]
    reductions: [none, mean]
"""


def sigmoid_minus_y(inputs, reduction):
    x, y = inputs["logits"], inputs["target"]
    grad = 1 / (1 + np.exp(-x)) - y
    return grad / x.size if reduction == "mean" else grad


def checks_for(tmp_path, grad):
    path = tmp_path / "unit.yaml"
    path.write_text(CASE)
    api = Api("double.logits", "double", "bce_with_logits", lambda i, r: None, "numpy", lambda a, d, r: "", grad=grad)
    checks = [c for c in enumerate_checks(load_file(path), [api]) if c.quantity == "grad"]
    return Runner(Framework("double", {}, [api])), checks


def test_gradient_checks_are_enumerated_with_their_own_ids(tmp_path):
    runner, checks = checks_for(tmp_path, sigmoid_minus_y)
    assert [c.id for c in checks] == ["unit/ordinary-double.logits-float64-none-grad", "unit/ordinary-double.logits-float64-mean-grad"]


def test_a_correct_gradient_is_exact_and_a_wrong_one_fails(tmp_path):
    runner, checks = checks_for(tmp_path, sigmoid_minus_y)
    assert [runner.run(c).verdict for c in checks] == ["exact", "exact"]
    runner, checks = checks_for(tmp_path, lambda i, r: sigmoid_minus_y(i, r) * 1.0001)
    results = [runner.run(c) for c in checks]
    assert [r.verdict for r in results] == ["fail", "fail"] and all(r.quantity == "grad" for r in results)


def test_an_api_without_a_gradient_is_unsupported(tmp_path):
    runner, checks = checks_for(tmp_path, None)
    result = runner.run(checks[0])
    assert result.verdict == "unsupported" and result.message == "double.logits has no gradient in this adapter"
