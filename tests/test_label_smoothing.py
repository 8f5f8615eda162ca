"""Label smoothing: the case field (loader and schema), the exact reference, and the adapter interface.

The reference is checked against Python's `decimal` module at 60 digits, which shares no code with
mpmath: the smoothed target y·(1 - ls) + ls/2 is exact there too (ls is a float64, so every step is
a finite binary fraction), and the loss is evaluated from it independently.
"""

from __future__ import annotations

import decimal
import sys
import types
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest

from conformance.adapters import Api, AdapterError, Framework, Unsupported, label_smoothing_arg, validate_framework
from conformance.adapters.keras_backend import import_keras, unavailable
from conformance.cases import CaseError, load_file
from conformance.dtypes import FORMATS, cast, to_fraction
from conformance.reference import reference, smooth_target

F16, F32, F64 = FORMATS["float16"], FORMATS["float32"], FORMATS["float64"]
REPO = Path(__file__).resolve().parents[1]
HEAD = "schema_version: 1\ndescription: test file\ncases:\n"  # a case's `- id:` is then on line 4
BLOG_LOGITS = [[1.9072, 1.1079, 1.4906], [-0.6584, -0.0512, 0.7608], [-0.0614, 0.6583, 0.1095]]
BLOG_PROBS = [[0.8707, 0.7517, 0.8162], [0.3411, 0.4872, 0.6815], [0.4847, 0.6589, 0.5273]]
BLOG_TARGET = [[0, 1, 1], [1, 1, 1], [0, 0, 0]]
CTX = decimal.Context(prec=60)


def write_case(folder: Path, body: str) -> Path:
    path = folder / "ls.yaml"
    path.write_text(HEAD + "  - id: a\n    why: w\n    logits: [1.0, -2.0]\n    target: [0, 1]\n" + body, encoding="utf-8")
    return path


def load_one(folder: Path, body: str):
    (case,) = load_file(write_case(folder, body))
    return case


# ---------------------------------------------------------------------------------------------
# The loader


def test_default_is_no_smoothing_and_no_input(tmp_path):
    case = load_one(tmp_path, "")
    assert case.label_smoothing == 0
    assert "label_smoothing" not in case.inputs(F32)


def test_zero_is_the_same_as_none(tmp_path):
    case = load_one(tmp_path, "    label_smoothing: 0\n")
    assert case.label_smoothing == 0 and "label_smoothing" not in case.inputs(F64)


@pytest.mark.parametrize("written", ["0.1", '"0.1"', '"0x1.999999999999ap-4"'])
def test_value_is_the_float64_an_api_receives(tmp_path, written):
    case = load_one(tmp_path, f"    label_smoothing: {written}\n")
    assert case.label_smoothing == Fraction(0.1)  # the decimal "0.1" is rounded once, to float64
    for fmt in (F16, F32, F64):  # never cast to the dtype under test
        value = case.inputs(fmt)["label_smoothing"]
        assert value.shape == () and value.dtype == np.float64 and float(value) == 0.1


@pytest.mark.parametrize("written", ["1", "1.0", "0.0", "-0.0", "0.5", "1e-300"])
def test_the_closed_interval_is_accepted(tmp_path, written):
    assert load_one(tmp_path, f"    label_smoothing: {written}\n").label_smoothing == Fraction(float(written))


@pytest.mark.parametrize(
    "written, shown",
    [
        ("1.5", "1.5"),
        ("-0.1", "-0.1"),
        ("1.0000000000000002", "1.0000000000000002"),
        (".nan", "nan"),
        (".inf", "inf"),
        ('"2"', "'2'"),
        ('"-1e-9"', "'-1e-9'"),
        ('"nan"', "'nan'"),
        ('"ten percent"', "'ten percent'"),
        ("true", "True"),
        ("[0.1]", "[0.1]"),
    ],
)
def test_values_outside_zero_one_are_rejected_naming_file_line_case_and_field(tmp_path, written, shown):
    path = write_case(tmp_path, f"    label_smoothing: {written}\n")
    with pytest.raises(CaseError) as info:
        load_file(path)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.case, problem.field) == (str(path), 8, "a", "label_smoothing")
    assert problem.message == f"label_smoothing must be a number in [0, 1], not {shown}"
    assert str(problem).startswith(f"{path}:8: case 'a' field 'label_smoothing': label_smoothing must be")


def test_every_problem_of_the_file_is_reported(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(
        HEAD
        + "  - id: a\n    why: w\n    probs: [0.5]\n    target: [1]\n    label_smoothing: 2\n"
        + "  - id: b\n    why: w\n    probs: [0.5]\n    target: [1]\n    label_smoothing: '-1'\n",
        encoding="utf-8",
    )
    with pytest.raises(CaseError) as info:
        load_file(path)
    assert [(p.case, p.field) for p in info.value.problems] == [("a", "label_smoothing"), ("b", "label_smoothing")]


def test_shipped_label_smoothing_cases():
    cases = load_file(REPO / "cases" / "label_smoothing.yaml")
    assert {case.label_smoothing for case in cases} == {Fraction(0.1), Fraction(0.2), Fraction(1)}
    assert all(case.why for case in cases)
    assert {case.kind for case in cases} == {"logits", "probs"}


# ---------------------------------------------------------------------------------------------
# The reference


def d(value) -> decimal.Decimal:
    return CTX.create_decimal(float(value))  # exact: every float64 is a finite decimal


def oracle_smoothed(y, ls) -> decimal.Decimal:
    return CTX.add(CTX.multiply(d(y), CTX.subtract(1, d(ls))), CTX.divide(d(ls), 2))


def oracle_logits_term(x, y) -> decimal.Decimal:
    """y·softplus(-x) + (1-y)·softplus(x), in `decimal` (every step through CTX)."""
    x = d(x)

    def softplus(t):
        if t > 0:
            return CTX.add(t, CTX.ln(CTX.add(1, CTX.exp(CTX.minus(t)))))
        return CTX.ln(CTX.add(1, CTX.exp(t)))

    return CTX.add(CTX.multiply(y, softplus(CTX.minus(x))), CTX.multiply(CTX.subtract(1, y), softplus(x)))


def oracle_probs_term(p, y) -> decimal.Decimal:
    p = d(p)
    return CTX.minus(CTX.add(CTX.multiply(y, CTX.ln(p)), CTX.multiply(CTX.subtract(1, y), CTX.ln(CTX.subtract(1, p)))))


def oracle_sigmoid(x) -> decimal.Decimal:
    return CTX.divide(1, CTX.add(1, CTX.exp(CTX.minus(d(x)))))


def close(oracle: decimal.Decimal, exact: mpmath.mpf, digits: int = 40) -> bool:
    with mpmath.workprec(400):
        return abs(mpmath.mpf(str(oracle)) - exact) < mpmath.mpf(10) ** -digits


def exact_inputs(first: str, values, fmt, ls: float) -> dict[str, np.ndarray]:
    to_exact = np.vectorize(Fraction, otypes=[object])
    return {
        first: cast(to_exact(np.array(values, dtype=object)), fmt),
        "target": cast(to_exact(np.array(BLOG_TARGET, dtype=object)), fmt),
        "label_smoothing": np.array(ls, dtype=np.float64),
    }


def test_smooth_target_is_exact():
    for y in (0.0, 1.0, 0.25, 0.7):
        for ls in (0.1, 0.2, 1.0, float.fromhex("0x1.fffffffffffffp-1")):
            with mpmath.workprec(53):  # exact at any precision
                got = smooth_target(mpmath.mpf(y), mpmath.mpf(ls))
            assert to_fraction(got) == Fraction(y) * (1 - Fraction(ls)) + Fraction(ls) / 2


@pytest.mark.parametrize("fmt", [F32, F64], ids=lambda f: f.name)
@pytest.mark.parametrize("ls", [0.1, 0.2])
def test_logits_loss_with_smoothing_matches_the_decimal_oracle(fmt, ls):
    inputs = exact_inputs("logits", BLOG_LOGITS, fmt, ls)
    terms = [oracle_logits_term(x, oracle_smoothed(y, ls)) for x, y in zip(inputs["logits"].ravel(), inputs["target"].ravel())]
    none = reference("bce_with_logits", inputs, "none", fmt)
    assert all(close(o, e) for o, e in zip(terms, none.exact.ravel()))
    total = decimal.Decimal(0)
    for term in terms:
        total = CTX.add(total, term)
    assert close(total, reference("bce_with_logits", inputs, "sum", fmt).exact[()])
    assert close(CTX.divide(total, 9), reference("bce_with_logits", inputs, "mean", fmt).exact[()])


@pytest.mark.parametrize("fmt", [F32, F64], ids=lambda f: f.name)
def test_probability_loss_with_smoothing_matches_the_decimal_oracle(fmt):
    inputs = exact_inputs("probs", BLOG_PROBS, fmt, 0.1)
    value = reference("bce", inputs, "none", fmt)
    for p, y, exact in zip(inputs["probs"].ravel(), inputs["target"].ravel(), value.exact.ravel()):
        assert close(oracle_probs_term(p, oracle_smoothed(y, 0.1)), exact)


@pytest.mark.parametrize("fmt", [F32, F64], ids=lambda f: f.name)
def test_gradient_with_smoothing_matches_the_decimal_oracle(fmt):
    inputs = exact_inputs("logits", BLOG_LOGITS, fmt, 0.2)
    value = reference("bce_with_logits", inputs, "none", fmt, gradient=True)
    for x, y, exact in zip(inputs["logits"].ravel(), inputs["target"].ravel(), value.exact.ravel()):
        assert close(CTX.subtract(oracle_sigmoid(x), oracle_smoothed(y, 0.2)), exact)


def test_the_smoothed_target_is_not_rounded_to_the_dtype():
    """In float32 the smoothed targets 0.05 and 0.95 are not float32 values: the reference must differ from
    the loss of the float32-rounded targets (what a framework smoothing in the dtype would see)."""
    inputs = exact_inputs("logits", BLOG_LOGITS, F32, 0.1)
    smoothed = reference("bce_with_logits", inputs, "none", F32).exact
    rounded = dict(inputs, target=(inputs["target"] * np.float32(0.9) + np.float32(0.05)).astype(np.float32))
    del rounded["label_smoothing"]
    of_rounded = reference("bce_with_logits", rounded, "none", F32).exact
    assert all(a != b for a, b in zip(smoothed.ravel(), of_rounded.ravel()))


def test_full_smoothing_is_target_one_half_exactly():
    inputs = exact_inputs("logits", BLOG_LOGITS, F64, 1.0)
    halves = {"logits": inputs["logits"], "target": np.full((3, 3), 0.5)}
    for reduction in ("none", "mean", "sum"):
        a = reference("bce_with_logits", inputs, reduction, F64).exact
        b = reference("bce_with_logits", halves, reduction, F64).exact
        assert np.array_equal(a, b)


def test_infinite_loss_at_the_ends_of_the_probabilities():
    """Smoothing makes every target soft, so p = 0 and p = 1 give +inf even where the hard target agreed."""
    inputs = {"probs": np.array([0.0, 1.0]), "target": np.array([0.0, 1.0]), "label_smoothing": np.array(0.1)}
    assert list(reference("bce", inputs, "none", F64).rounded) == [np.inf, np.inf]
    del inputs["label_smoothing"]
    assert list(reference("bce", inputs, "none", F64).rounded) == [0.0, 0.0]


@pytest.mark.parametrize("bad", [np.array(1.5), np.array(-0.25), np.array(np.nan), np.array([0.1, 0.2])])
def test_reference_rejects_a_label_smoothing_outside_zero_one(bad):
    inputs = {"logits": np.array([1.0]), "target": np.array([1.0]), "label_smoothing": bad}
    with pytest.raises(ValueError, match="label_smoothing must be a single number in \\[0, 1\\]"):
        reference("bce_with_logits", inputs, "none", F64)


# ---------------------------------------------------------------------------------------------
# The adapter interface


def make_api(**unsupported) -> Api:
    return Api(
        name="my.bce",
        framework="my",
        op="bce_with_logits",
        call=lambda inputs, reduction: np.zeros(()),
        reduced_by="-",
        repro=lambda args, dtype, reduction: "",
        unsupported=unsupported,
    )


def test_why_unsupported_reads_label_smoothing_from_the_inputs():
    api = make_api(label_smoothing="my.bce has no label_smoothing argument")
    plain = {"logits": np.zeros(2, np.float32), "target": np.zeros(2, np.float32)}
    assert api.why_unsupported("float32", plain) is None
    smoothed = dict(plain, label_smoothing=np.array(0.1))
    assert api.why_unsupported("float32", smoothed) == "my.bce has no label_smoothing argument"
    assert api.why_unsupported("float32", smoothed, "grad") == "my.bce has no label_smoothing argument"
    assert make_api().why_unsupported("float32", smoothed) is None  # an API that takes it


def test_validation_accepts_the_label_smoothing_key_and_still_rejects_unknown_ones():
    validate_framework(Framework("my", {}, [make_api(label_smoothing="why")]), "test")
    with pytest.raises(AdapterError, match="unsupported has key 'smoothing'.*label_smoothing"):
        validate_framework(Framework("my", {}, [make_api(smoothing="why")]), "test")


def test_reproducer_argument():
    assert label_smoothing_arg({"input": "['0x1p+0']"}) == ""
    assert label_smoothing_arg({"label_smoothing": "['0x1.999999999999ap-4', '0x1.999999999999ap-4']"}) == ", label_smoothing=0.1"


def test_keras_on_another_backend_makes_the_keras_apis_unsupported(monkeypatch):
    fake = types.ModuleType("keras")
    fake.backend = types.SimpleNamespace(backend=lambda: "tensorflow")
    monkeypatch.setitem(sys.modules, "keras", fake)
    keras, why = import_keras("torch", "torch")
    assert keras is None and "'tensorflow' backend" in why and "--framework torch" in why
    with pytest.raises(Unsupported, match="once per process"):
        unavailable(why)({}, "none")
    assert import_keras("tensorflow", "tensorflow") == (fake, None)


def test_keras_missing_is_an_import_error_naming_keras(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # import keras now fails
    with pytest.raises(ImportError, match="keras is not installed"):
        import_keras("jax", "jax")
