"""An API whose loss is the mean over the last axis (Keras's binary_crossentropy, axis=-1): the
reference's three reductions and their gradients against Python's `decimal` at 60 digits, and the
runner's use of them with a NumPy test double that declares ``axis_mean``."""

from __future__ import annotations

import decimal

import numpy as np
import pytest

from conformance.adapters import Api, AdapterError, Framework, validate_framework
from conformance.cases import load_file
from conformance.dtypes import get_format
from conformance.reference import reference
from conformance.runner import Check, Runner, enumerate_checks
from conformance.verdicts import Verdict

CTX = decimal.Context(prec=60)
F64 = get_format("float64")

PROBS = np.array([[0.5, 0.25, 0.125], [0.75, 0.0625, 0.9]])
TARGET = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.25]])
LOGITS = np.array([[-2.0, 0.5, 3.0], [0.0, 1.5, -0.75]])


def d(value) -> decimal.Decimal:
    return CTX.create_decimal(float(value))  # exact


def probs_term(p, y) -> decimal.Decimal:
    p, y = d(p), d(y)
    return CTX.minus(CTX.add(CTX.multiply(y, CTX.ln(p)), CTX.multiply(CTX.subtract(1, y), CTX.ln(CTX.subtract(1, p)))))


def logits_term(x, y) -> decimal.Decimal:
    x, y = d(x), d(y)

    def softplus(t):
        if t > 0:
            return CTX.add(t, CTX.ln(CTX.add(1, CTX.exp(CTX.minus(t)))))
        return CTX.ln(CTX.add(1, CTX.exp(t)))

    return CTX.add(CTX.multiply(y, softplus(CTX.minus(x))), CTX.multiply(CTX.subtract(1, y), softplus(x)))


def probs_grad(p, y) -> decimal.Decimal:  # d/dp: (p - y) / (p·(1 - p))
    p, y = d(p), d(y)
    return CTX.divide(CTX.subtract(p, y), CTX.multiply(p, CTX.subtract(1, p)))


def oracle(values: np.ndarray, term, reduction: str, gradient: bool = False):
    """The axis reductions computed independently: row means, their sum, their mean (as float64, rounded
    once); ``values`` holds (first, target) pairs in its own last axis."""
    shape = values.shape[:-1]
    length = shape[-1]
    rows = values.reshape(-1, length, 2)
    count = rows.shape[0]
    terms = [[term(*pair) for pair in row] for row in rows]
    if gradient:
        scale = length * count if reduction == "mean" else length
        out = [[float(CTX.divide(t, scale)) for t in row] for row in terms]
        return np.array(out).reshape(shape)
    means = [CTX.divide(sum(row, decimal.Decimal(0)), length) for row in terms]
    if reduction == "none":
        return np.array([float(m) for m in means]).reshape(shape[:-1])
    total = sum(means, decimal.Decimal(0))
    return np.array(float(total if reduction == "sum" else CTX.divide(total, count)))


def as_float64(value) -> np.ndarray:
    """The exact reference values, each rounded once to float64 by mpmath (correctly rounded, signed)."""
    exact = value.exact
    return np.array([float(v) for v in exact.ravel()]).reshape(exact.shape)


def pairs(first: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.stack([first, target], axis=-1)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_probability_reductions_and_gradients_match_decimal(reduction):
    inputs = {"probs": PROBS, "target": TARGET}
    both = pairs(PROBS, TARGET)
    got = reference("bce", inputs, reduction, F64, axis_mean=True).rounded
    want = oracle(both, probs_term, reduction)
    assert got.shape == want.shape == ((2,) if reduction == "none" else ())
    assert np.array_equal(got, want)
    grad = as_float64(reference("bce", inputs, reduction, F64, gradient=True, axis_mean=True))
    assert np.array_equal(grad, oracle(both, probs_grad, reduction, gradient=True))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_logits_reductions_match_decimal(reduction):
    inputs = {"logits": LOGITS, "target": TARGET}
    got = reference("bce_with_logits", inputs, reduction, F64, axis_mean=True).rounded
    assert np.array_equal(got, oracle(pairs(LOGITS, TARGET), logits_term, reduction))


def test_the_sum_of_row_means_is_not_the_plain_sum_and_the_mean_is_the_plain_mean():
    inputs = {"probs": PROBS, "target": TARGET}
    plain_sum = reference("bce", inputs, "sum", F64).rounded
    axis_sum = reference("bce", inputs, "sum", F64, axis_mean=True).rounded
    assert axis_sum != plain_sum and abs(float(axis_sum) * 3 - float(plain_sum)) < 1e-13
    # rows of equal length: the mean of the row means is the mean of all elements
    assert reference("bce", inputs, "mean", F64, axis_mean=True).rounded == reference("bce", inputs, "mean", F64).rounded


def test_a_one_d_input_is_one_row_and_a_zero_d_input_has_no_last_axis():
    inputs = {"probs": PROBS[0], "target": TARGET[0]}
    none = reference("bce", inputs, "none", F64, axis_mean=True).rounded
    assert none.shape == () and none == reference("bce", inputs, "mean", F64).rounded
    assert reference("bce", inputs, "sum", F64, axis_mean=True).rounded == none
    with pytest.raises(ValueError, match="last axis"):
        reference("bce", {"probs": np.array(0.5), "target": np.array(1.0)}, "none", F64, axis_mean=True)


def test_infinite_terms_propagate_into_their_row():
    inputs = {"probs": np.array([[0.0, 0.5], [0.5, 0.5]]), "target": np.array([[1.0, 0.0], [0.0, 1.0]])}
    none = reference("bce", inputs, "none", F64, axis_mean=True).rounded
    assert np.isposinf(none[0]) and none[1] == float(CTX.ln(2))


# ---------------------------------------------------------------------------------------------
# The runner, with a NumPy test double declaring the axis reduction

CASE = """\
schema_version: 1
description: axis reduction tests
cases:
  - id: rows
    why: two rows of three probabilities
    probs: [[0.5, 0.25, 0.125], [0.75, 0.0625, 0.9]]
    target: [[0, 1, 1], [1, 0, 0.25]]
  - id: vector
    why: one row
    probs: [0.5, 0.25, 0.125]
    target: [0, 1, 1]
"""


@pytest.fixture
def cases(tmp_path):
    path = tmp_path / "axis.yaml"
    path.write_text(CASE)
    return load_file(path)


def row_means(inputs):
    p, y = inputs["probs"], inputs["target"]
    return np.mean(-(y * np.log(p) + (1 - y) * np.log1p(-p)), axis=-1)


def axis_call(inputs, reduction):
    out = row_means(inputs)
    return {"none": out, "sum": np.sum(out), "mean": np.mean(out)}[reduction]


def axis_grad(inputs, reduction):
    p, y = inputs["probs"], inputs["target"]
    g = (p - y) / (p * (1 - p)) / p.shape[-1]
    return g / (g.size // p.shape[-1]) if reduction == "mean" else g


def elementwise_call(inputs, reduction):
    p, y = inputs["probs"], inputs["target"]
    out = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    return {"none": out, "sum": np.sum(out), "mean": np.mean(out)}[reduction]


def double(call=axis_call, grad=axis_grad, axis_mean=True):
    return Api(
        name="double.axis",
        framework="double",
        op="bce",
        call=call,
        grad=grad,
        reduced_by="row means over the last axis, then np.sum / np.mean",
        repro=lambda args, dtype, reduction: f"repro({sorted(args)}, {args.get('shape')}, {reduction})",
        dtypes=("float64",),
        axis_mean=axis_mean,
    )


def run(api, case, reduction, quantity="value"):
    return Runner(Framework("double", {"double": "1"}, [api])).run(Check(case, api, "float64", reduction, quantity))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("quantity", ["value", "grad"])
def test_the_runner_judges_against_the_declared_reduction(cases, reduction, quantity):
    for case in cases:
        result = run(double(), case, reduction, quantity)
        assert result.verdict == Verdict.EXACT.value, result.message
        assert result.reduced_by.startswith("row means")  # said even for `none`, which is itself reduced


def test_an_elementwise_result_is_the_wrong_shape_and_a_plain_sum_is_wrong(cases):
    api = double(call=elementwise_call)
    result = run(api, cases[0], "none")
    assert result.verdict == Verdict.ERROR.value and "expected (2,)" in result.message
    assert run(api, cases[0], "sum").verdict == Verdict.FAIL.value
    assert run(api, cases[0], "mean").verdict == Verdict.EXACT.value  # equal rows: the same mean


def test_a_wrong_result_shows_its_row_and_reproduces_it_with_its_shape(cases):
    result = run(double(call=lambda inputs, r: axis_call(inputs, r) * 1.001), cases[0], "none")
    assert result.verdict == Verdict.FAIL.value
    assert result.worst[0]["inputs"]["probs"].startswith("[") and result.worst[0]["inputs"]["probs"].count("0x") == 3
    assert ", [3], none)" in result.repro
    summed = run(double(call=lambda inputs, r: axis_call(inputs, r) * 1.001), cases[0], "sum")
    assert ", [2, 3], sum)" in summed.repro


def test_relations_are_mean_vs_sum_over_the_rows_only(cases):
    api = double()
    checks = enumerate_checks(cases, [api])
    assert {c.quantity for c in checks} == {"value", "grad", "mean-vs-sum"}
    relation = next(c for c in checks if c.quantity == "mean-vs-sum" and c.case.id == "rows" and c.dtype == "float64")
    result = Runner(Framework("double", {"double": "1"}, [api])).run(relation)
    assert result.verdict == Verdict.EXACT.value and "/ 2:" in result.message


def test_a_zero_d_input_is_unsupported_and_axis_mean_must_be_a_bool():
    api = double()
    assert "last axis" in api.why_unsupported("float64", {"probs": np.array(0.5), "target": np.array(1.0)})
    with pytest.raises(AdapterError, match="axis_mean must be a bool"):
        validate_framework(Framework("double", {}, [double(axis_mean="yes")]), "test")
