"""float64 means and sums by ball arithmetic equal the mpmath path's correctly rounded values."""

from __future__ import annotations

import numpy as np
import pytest

from conformance import arb_reference
from conformance.dtypes import FORMATS
from conformance.reference import reference

FLOAT64 = FORMATS["float64"]


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(arb_reference, "MIN_ELEMENTS", 1000)  # so that mpmath can check it in seconds
    arb_reference._sums.clear()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("formula", ["bce_with_logits", "bce"])
def test_balls_round_as_mpmath_does(formula, reduction):
    rng = np.random.default_rng(3)
    first = rng.normal(0, 20, 1500) if formula == "bce_with_logits" else rng.uniform(0, 1, 1500)
    inputs = {"logits" if formula == "bce_with_logits" else "probs": first, "target": rng.uniform(0, 1, 1500)}
    inputs["weight"] = rng.uniform(0, 2, 1500)
    balls = reference(formula, inputs, reduction, FLOAT64)
    exact = reference(formula, inputs, reduction, FLOAT64, fast=False)
    assert balls.precision == 2 * 53 + 64 and balls.rounded == exact.rounded
    assert abs(balls.exact[()] - exact.exact[()]) <= abs(exact.exact[()]) * 2.0**-100


def test_special_values_and_small_inputs_take_the_mpmath_path():
    rng = np.random.default_rng(4)
    inputs = {"logits": np.append(rng.normal(0, 4, 1500), np.inf), "target": np.append(rng.uniform(0, 1, 1500), 0.0)}
    assert arb_reference.reduction("bce_with_logits", inputs, "mean", FLOAT64) is None
    small = {"logits": rng.normal(0, 4, 10), "target": rng.uniform(0, 1, 10)}
    assert arb_reference.reduction("bce_with_logits", small, "mean", FLOAT64) is None


def test_the_mpmath_path_refuses_what_would_take_minutes(monkeypatch):
    from conformance import reference as reference_module

    monkeypatch.setattr(reference_module, "MPMATH_MAX_ELEMENTS", 100)
    inputs = {"logits": np.zeros(200), "target": np.zeros(200)}
    with pytest.raises(reference_module.ReferenceError, match="200 elements for the mpmath path"):
        reference("bce_with_logits", inputs, "none", FLOAT64)


@pytest.mark.parametrize("shape, reduction", [((1500,), "none"), ((1500,), "mean"), ((1500,), "sum"), ((3, 500), "mean")])
def test_keras_row_means_of_a_large_float64_input_take_the_balls(shape, reduction):
    # Keras's mean over the last axis: the mean of the row means is the mean of every element, and for one
    # row (a 1-D input) so are the row mean and its sum. These took the mpmath path, which refuses a
    # million elements (the error of cases/scale.yaml's float64 case under keras ... axis=-1)
    rng = np.random.default_rng(5)
    inputs = {"logits": rng.uniform(-15, 15, shape), "target": rng.uniform(0, 1, shape)}
    balls = reference("bce_with_logits", inputs, reduction, FLOAT64, axis_mean=True)
    exact = reference("bce_with_logits", inputs, reduction, FLOAT64, axis_mean=True, fast=False)
    assert balls.precision == 2 * 53 + 64 and balls.rounded == exact.rounded and balls.rounded.shape == exact.rounded.shape
    assert abs(balls.exact[()] - exact.exact[()]) <= abs(exact.exact[()]) * 2.0**-100


def test_keras_row_sums_of_several_rows_stay_on_the_mpmath_path():
    rng = np.random.default_rng(6)
    inputs = {"logits": rng.uniform(-15, 15, (3, 500)), "target": rng.uniform(0, 1, (3, 500))}
    assert reference("bce_with_logits", inputs, "sum", FLOAT64, axis_mean=True).precision != 2 * 53 + 64


@pytest.mark.parametrize("offset, settles", [(-(2.0**-200), False), (2.0**-100, True), (-(2.0**-100), True)])
def test_a_ball_around_a_power_of_two_does_not_give_the_binade(monkeypatch, offset, settles):
    """A ball 2 ± 2^-190 whose ends both round to 2 does not say whether the exact value, and so its ULP,
    lies below 2 or above: at no precision here (the ball is the same at each), so the mpmath path decides.
    A ball clear of 2 gives its midpoint, in the exact value's binade."""
    from flint import arb

    monkeypatch.setattr(arb_reference, "_sum", lambda *args: arb(2) + arb(offset) + arb(0, 2.0**-190))
    rng = np.random.default_rng(5)
    inputs = {"logits": rng.normal(0, 4, 1500), "target": rng.uniform(0, 1, 1500)}
    balls = arb_reference.reduction("bce_with_logits", inputs, "sum", FLOAT64)
    if not settles:
        assert balls is None
    else:
        value, middle = balls
        assert value == 2.0 and (middle < 2) == (offset < 0)
