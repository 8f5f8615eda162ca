"""The gradient with respect to the target (`grad_target`): the reference against finite differences of
the exact loss and closed forms, and the runner with a NumPy test double."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mpmath
import numpy as np
import pytest

from conformance.adapters import Api, Framework, validate_framework
from conformance.cases import load
from conformance.dtypes import get_format
from conformance.reference import bce_term, bce_with_logits_term, reference, smooth_target
from conformance.runner import Runner, enumerate_checks

F64 = get_format("float64")


def finite_difference(loss, y, h=mpmath.mpf(2) ** -150):
    """A central difference of the exact loss in y at 400 bits: its error is O(h**2), far below float64."""
    with mpmath.workprec(400):
        return (loss(y + h) - loss(y - h)) / (2 * h)


@pytest.mark.parametrize("x", [1.9072, -0.0512, 0.7608, -30.5, 12.0])
@pytest.mark.parametrize("y", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("q", [None, 3.0, 0.5])
@pytest.mark.parametrize("w", [1.0, 0.25])
def test_logits_target_gradient_is_the_derivative_of_the_loss(x, y, w, q):
    inputs = {"logits": np.array([x]), "target": np.array([y]), "weight": np.array([w])}
    if q is not None:
        inputs["pos_weight"] = np.array([q])
    got = reference("bce_with_logits", inputs, "none", F64, gradient=True, wrt="target")
    qq = mpmath.mpf(1) if q is None else mpmath.mpf(q)
    want = finite_difference(lambda t: bce_with_logits_term(mpmath.mpf(x), t, mpmath.mpf(w), qq), mpmath.mpf(y))
    assert got.rounded[0] == float(want)  # correctly rounded: the finite difference is accurate to ~2**-300
    if q is None:
        assert got.rounded[0] == -w * x  # the closed form -w·x (exact in float64 here)


@pytest.mark.parametrize("p", [0.8707, 0.4872, 0.5273, 1e-30, 0.999])
@pytest.mark.parametrize("y", [0.0, 0.75])
@pytest.mark.parametrize("q", [None, 2.0])
def test_probability_target_gradient_is_the_derivative_of_the_loss(p, y, q):
    inputs = {"probs": np.array([p]), "target": np.array([y]), "weight": np.array([0.5])}
    got = reference("bce", inputs, "none", F64, gradient=True, wrt="target")
    qq = None if q is None else mpmath.mpf(q)
    if q is not None:  # bce takes no pos_weight in the cases; the term itself does
        from conformance.reference import bce_target_grad

        with mpmath.workprec(400):
            direct = bce_target_grad(mpmath.mpf(p), mpmath.mpf(y), mpmath.mpf(0.5), qq)
        want = finite_difference(lambda t: bce_term(mpmath.mpf(p), t, mpmath.mpf(0.5), qq), mpmath.mpf(y))
        assert abs(direct - want) < mpmath.mpf(2) ** -200 * (1 + abs(want))
        return
    want = finite_difference(lambda t: bce_term(mpmath.mpf(p), t, mpmath.mpf(0.5)), mpmath.mpf(y))
    assert got.rounded[0] == float(want)
    with mpmath.workprec(400):
        assert got.rounded[0] == float(0.5 * (mpmath.log1p(-mpmath.mpf(p)) - mpmath.log(mpmath.mpf(p))))


def test_closed_forms_reductions_and_ends():
    x = np.array([[1.5, -0.25], [3.0, 0.0]])
    inputs = {"logits": x, "target": np.array([[0.0, 1.0], [0.5, 1.0]])}
    for reduction, scale in (("none", 1), ("sum", 1), ("mean", 4)):
        got = reference("bce_with_logits", inputs, reduction, F64, gradient=True, wrt="target").rounded
        np.testing.assert_array_equal(got, -x / scale)
    # axis_mean (Keras's mean over the last axis): divided by the row length, and by the rows for mean
    got = reference("bce_with_logits", inputs, "mean", F64, gradient=True, axis_mean=True, wrt="target").rounded
    np.testing.assert_array_equal(got, -x / 4)
    got = reference("bce_with_logits", inputs, "sum", F64, gradient=True, axis_mean=True, wrt="target").rounded
    np.testing.assert_array_equal(got, -x / 2)
    # p = 1/2 gives exactly 0; p = 0 and 1 give ±inf
    got = reference("bce", {"probs": np.array([0.5, 0.0, 1.0]), "target": np.array([0.5, 0.5, 0.5])}, "none", F64, gradient=True, wrt="target")
    assert got.rounded.tolist() == [0.0, np.inf, -np.inf]


def test_label_smoothing_scales_by_one_minus_ls():
    ls = 0.25
    inputs = {"logits": np.array([1.5, -2.0]), "target": np.array([0.0, 1.0]), "label_smoothing": np.array(ls)}
    got = reference("bce_with_logits", inputs, "none", F64, gradient=True, wrt="target").rounded
    np.testing.assert_array_equal(got, [-1.5 * 0.75, 2.0 * 0.75])
    # and against the finite difference of the smoothed loss in y
    want = finite_difference(
        lambda t: bce_with_logits_term(mpmath.mpf(1.5), smooth_target(t, mpmath.mpf(ls)), mpmath.mpf(1), mpmath.mpf(1)),
        mpmath.mpf(0),
    )
    assert got[0] == float(want)


def test_target_gradient_takes_no_variant():
    from conformance.variants import get

    with pytest.raises(ValueError):
        reference("bce", {"probs": np.array([0.5]), "target": np.array([1.0])}, "none", F64, variant=get("prob_clip(1e-7)"), gradient=True, wrt="target")
    with pytest.raises(ValueError):
        reference("bce", {"probs": np.array([0.5]), "target": np.array([1.0])}, "none", F64, wrt="target")


# ---------------------------------------------------------------------------------------------
# the runner, with a NumPy test double


def _stable(inputs, reduction):
    x, y = inputs["logits"], inputs["target"]
    loss = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    return {"none": loss, "mean": np.mean(loss), "sum": np.sum(loss)}[reduction]


def _target_grad(inputs, reduction):
    g = -inputs["logits"]  # d/dy of the stable formula
    return g / g.size if reduction == "mean" else g


def _api(**changes) -> Api:
    api = Api(
        name="double.bce_with_logits",
        framework="double",
        op="bce_with_logits",
        call=_stable,
        reduced_by="numpy.mean / numpy.sum",
        repro=lambda args, dtype, reduction: "",
        unsupported={"weight": "no weight", "pos_weight": "no pos_weight", "label_smoothing": "no label_smoothing"},
        grad_target=_target_grad,
    )
    return replace(api, **changes)


CASES = Path(__file__).resolve().parent.parent / "cases"


def _run(api: Api):
    cases = [c for c in load([CASES / "target_gradients.yaml"]) if c.id == "blog-3x3-logits"]
    framework = Framework(name="double", versions={"numpy": np.__version__}, apis=[api])
    validate_framework(framework, "test double")
    runner = Runner(framework)
    checks = [c for c in enumerate_checks(cases, [api]) if c.quantity == "grad_target"]
    return checks, [runner.run(check) for check in checks]


def test_runner_grad_target_exact_when_right():
    checks, results = _run(_api())
    assert len(checks) == 6  # float32 and float64, none / mean / sum
    assert all(c.id.endswith("-grad_target") for c in checks)
    assert {r.verdict for r in results} == {"exact"}
    assert {r.quantity for r in results} == {"grad_target"}


def test_runner_grad_target_fails_when_wrong():
    _, results = _run(_api(grad_target=lambda inputs, reduction: 2 * _target_grad(inputs, reduction)))
    assert {r.verdict for r in results} == {"fail"}


def test_runner_grad_target_unsupported_when_absent():
    _, results = _run(_api(grad_target=None))
    assert {r.verdict for r in results} == {"unsupported"}
    assert {r.message for r in results} == {"double.bce_with_logits has no gradient with respect to the target in this adapter"}
    _, results = _run(_api(grad_target=None, unsupported={"grad_target": "no autodiff"}))
    assert {r.message for r in results} == {"no autodiff"}


def test_target_gradients_are_opt_in():
    cases = load([CASES / "seed.yaml"])
    assert not any(c.target_gradients for c in cases)
    assert not any(c.quantity == "grad_target" for c in enumerate_checks(cases, [_api()]))
    ours = load([CASES / "target_gradients.yaml"])
    assert all(c.target_gradients and not c.gradients for c in ours)
