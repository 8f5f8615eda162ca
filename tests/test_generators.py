"""Input generators in the case format (conformance/generators.py, as loaded by conformance/cases.py)."""

from __future__ import annotations

import json
import math
import time
from fractions import Fraction
from pathlib import Path

import jsonschema
import ml_dtypes
import mpmath
import numpy as np
import pytest
from ruamel.yaml import YAML

from conformance import generators
from conformance.cases import CaseError, load_file, schema
from conformance.cli import main
from conformance.dtypes import FORMATS, cast, round_to_format
from conformance.generators import (
    MAX_ELEMENTS,
    GeneratorError,
    PerDtype,
    exp_overflow,
    expand,
    round_exact,
    round_float64,
    sigmoid_saturation,
    special_value,
)

REPO = Path(__file__).resolve().parents[1]
F16, BF16, F32, F64 = (FORMATS[name] for name in ("float16", "bfloat16", "float32", "float64"))
HEAD = "schema_version: 1\ndescription: test file\ncases:\n"  # a case's `- id:` is then on line 4


def write(folder: Path, text: str, name: str = "g.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def one_case(folder: Path, body: str):
    """The single case of a file whose fields (after `- id: a` and `why: w`, lines 4-5) are ``body``."""
    (case,) = load_file(write(folder, HEAD + "  - id: a\n    why: w\n" + body))
    return case


def exact_list(case, name: str, fmt=F64) -> list:
    return list(np.asarray(case.exact(fmt)[name]).ravel())


# ---------------------------------------------------------------------------------------------
# linspace


def test_linspace_is_exact_rational(tmp_path):
    case = one_case(tmp_path, "    logits: {linspace: [-1, 1, 31]}\n    target: {linspace: [0, 1, 31]}\n")
    assert case.shape == (31,)
    logits = exact_list(case, "logits")
    assert logits == [Fraction(-1) + Fraction(2 * i, 30) for i in range(31)]
    assert all(isinstance(v, Fraction) for v in logits)  # 1/15 steps are not float64 values: kept as Fractions
    assert logits[0] == -1 and logits[15] == 0 and logits[-1] == 1
    assert case.inputs(F32)["logits"][1] == np.float32(Fraction(-14, 15))  # rounded once from the exact value
    assert case.generated["logits"].description == "linspace [-1, 1, 31]"


def test_linspace_of_float64_points_is_a_float64_array(tmp_path):
    case = one_case(tmp_path, '    logits: {linspace: ["-0x1p+3", 8, 65]}\n    target: {linspace: [0, 1, 65]}\n')
    logits = case.values["logits"]
    assert logits.dtype == np.float64  # every point is a float64 value: the exact values, vectorised
    assert [Fraction(v) for v in logits] == [Fraction(-8) + Fraction(16 * i, 64) for i in range(65)]


@pytest.mark.parametrize(
    "start, stop, num",
    [(-8, 8, 65), (Fraction(1, 3), 2, 7), (0, Fraction(1, 1024), 1025), (Fraction(3, 2**40), Fraction(5, 2**40), 9), (2**60, 2**60 + 2**20, 5)],
)
def test_linspace_paths_agree_with_the_definition(start, stop, num):
    values = generators.linspace_exact(Fraction(start), Fraction(stop), num)
    want = [Fraction(start) + i * (Fraction(stop) - Fraction(start)) / (num - 1) for i in range(num)]
    assert [Fraction(v) for v in values] == want


def test_linspace_num_one_descending_and_hex(tmp_path):
    case = one_case(tmp_path, '    logits: {linspace: ["0x1.8p+1", 3, 1]}\n    target: [1]\n')
    assert exact_list(case, "logits") == [3]
    case = one_case(tmp_path, '    logits: {linspace: [1, "-0.5", 4]}\n    target: [0, 0, 0, 0]\n')
    assert exact_list(case, "logits") == [1, Fraction(1, 2), 0, Fraction(-1, 2)]


def test_linspace_decimal_strings_are_exact(tmp_path):
    case = one_case(tmp_path, '    logits: {linspace: ["0.1", "0.3", 3]}\n    target: [0, 0, 0]\n')
    assert exact_list(case, "logits") == [Fraction(1, 10), Fraction(2, 10), Fraction(3, 10)]
    assert case.inputs(F64)["logits"].tolist() == [0.1, 0.2, 0.3]  # each decimal rounded once: 0.2, not 0.1 + 0.1


# ---------------------------------------------------------------------------------------------
# logspace


def nearest_float64_power_of_ten(e: Fraction) -> float:
    with mpmath.workprec(600):
        return round_to_format(mpmath.power(10, mpmath.mpf(e.numerator) / e.denominator), F64)


def test_logspace_is_the_float64_nearest_each_power(tmp_path):
    case = one_case(tmp_path, "    logits: {logspace: [-3, 3, 13]}\n    target: {linspace: [0, 0, 13]}\n")
    logits = case.values["logits"]
    assert logits.dtype == np.float64
    assert logits.tolist() == [nearest_float64_power_of_ten(Fraction(k, 2)) for k in range(-6, 7)]
    assert logits[0] == 0.001 and logits[6] == 1.0 and logits[-1] == 1000.0
    assert logits[7] == nearest_float64_power_of_ten(Fraction(1, 2)) == math.sqrt(10)


def test_logspace_integer_exponents_are_exactly_rounded():
    values = expand({"logspace": [-30, 30, 61]}).values
    assert values.tolist() == [float(Fraction(10) ** k) for k in range(-30, 31)]  # float() of a Fraction rounds correctly
    assert values.tolist() == [float(f"1e{k}") for k in range(-30, 31)]


def test_logspace_signs():
    positive = expand({"logspace": [0, 2, 3]}).values.tolist()
    assert positive == [1.0, 10.0, 100.0]
    assert expand({"logspace": [0, 2, 3], "signs": "negative"}).values.tolist() == [-100.0, -10.0, -1.0]
    both = expand({"logspace": [0, 2, 3], "signs": "both"}).values.tolist()
    assert both == [-100.0, -10.0, -1.0, 1.0, 10.0, 100.0]
    underflowing = expand({"logspace": [-400, -300, 2], "signs": "both"}).values  # 1e-400 is 0 in float64
    assert underflowing.tolist() == [-1e-300, 0.0, 1e-300]
    assert not np.signbit(underflowing[1])  # one zero, +0


# ---------------------------------------------------------------------------------------------
# all_finite


@pytest.mark.parametrize("dtype, count, largest", [("float16", 63488, 65504.0), ("bfloat16", 65280, float(ml_dtypes.finfo(ml_dtypes.bfloat16).max))])
def test_all_finite(tmp_path, dtype, count, largest):
    values = generators.all_finite(dtype)
    assert values.dtype == np.float64 and values.shape == (count,)
    assert count == generators.finite_count(FORMATS[dtype])
    assert values[0] == -largest and values[-1] == largest
    assert np.all(np.diff(values) >= 0)  # ascending
    zeros = np.flatnonzero(values == 0)
    assert len(zeros) == 2 and np.signbit(values[zeros[0]]) and not np.signbit(values[zeros[1]])  # -0.0 then +0.0
    bits = np.arange(2**16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):
        finite_bits = bits[np.isfinite(bits.view(FORMATS[dtype].numpy_dtype).astype(np.float64))]
    assert len(finite_bits) == count  # every finite bit pattern, once
    assert np.array_equal(np.sort(values.astype(FORMATS[dtype].numpy_dtype).view(np.uint16)), finite_bits)
    case = one_case(tmp_path, f"    logits: {{all_finite: {dtype}}}\n    target: [0, 0.5, 1]\n    product: true\n    dtypes: [{dtype}]\n")
    cast_values = case.inputs(FORMATS[dtype])["logits"][:, 0]
    assert np.array_equal(cast_values.astype(np.float64), values)  # exact in its own dtype
    assert case.generated["logits"].description == f"all_finite {dtype}"


def test_all_finite_rounds_to_a_narrower_dtype(tmp_path):
    case = one_case(tmp_path, "    logits: {all_finite: float16}\n    target: [1]\n    product: true\n    dtypes: [bfloat16]\n")
    rounded = case.inputs(BF16)["logits"][:, 0]
    want = cast(generators.all_finite("float16")[::997], BF16)  # the per-element reference rounding
    assert np.array_equal(rounded[::997].astype(np.float64), want.astype(np.float64))
    assert float(rounded[-1]) == 65536.0  # 65504 to 8 significant bits


# ---------------------------------------------------------------------------------------------
# special


def finfo(fmt):
    return ml_dtypes.finfo(fmt.numpy_dtype) if fmt is BF16 else np.finfo(fmt.numpy_dtype)


@pytest.mark.parametrize("fmt", [F16, BF16, F32, F64], ids=lambda f: f.name)
def test_special_values_per_dtype(fmt):
    info = finfo(fmt)
    assert special_value("smallest_subnormal", fmt) == float(info.smallest_subnormal)
    assert special_value("smallest_normal", fmt) == float(info.smallest_normal)
    assert special_value("largest_finite", fmt) == float(info.max)
    assert special_value("-largest_finite", fmt) == float(info.min)
    assert special_value("epsilon", fmt) == float(info.eps)
    one = np.array(1.0, dtype=fmt.numpy_dtype)
    below_one = float(np.nextafter(one, np.array(0, dtype=fmt.numpy_dtype))) if fmt is not BF16 else 1 - 2.0**-8
    assert special_value("one_minus_epsilon", fmt) == below_one
    assert math.copysign(1, special_value("neg_zero", fmt)) == -1 and special_value("neg_zero", fmt) == 0
    assert math.copysign(1, special_value("zero", fmt)) == 1
    assert math.copysign(1, special_value("-zero", fmt)) == -1
    assert special_value("inf", fmt) == math.inf == -special_value("neg_inf", fmt) == -special_value("-inf", fmt)
    assert math.isnan(special_value("nan", fmt))
    for name in generators.SPECIAL_NAMES:  # every point is a value of the dtype
        value = special_value(name, fmt)
        assert math.isnan(value) or round_to_format(Fraction(value) if math.isfinite(value) else value, fmt) == value


def sigmoid_rounds_to_one(x: float, fmt) -> bool:
    with mpmath.workprec(2000):
        return round_to_format(1 / (1 + mpmath.exp(-mpmath.mpf(x))), fmt) == 1.0


def exp_is_finite(x: float, fmt) -> bool:
    with mpmath.workprec(2000):
        return math.isfinite(round_to_format(mpmath.exp(mpmath.mpf(x)), fmt))


def neighbours(x: float, fmt) -> tuple[float, float]:
    dtype = fmt.numpy_dtype
    value = np.array(x, dtype=dtype)
    return float(np.nextafter(value, np.array(-np.inf, dtype=dtype))), float(np.nextafter(value, np.array(np.inf, dtype=dtype)))


@pytest.mark.parametrize("fmt", [F16, F32, F64], ids=lambda f: f.name)
def test_sigmoid_saturation_and_exp_overflow_by_their_definitions(fmt):
    x = sigmoid_saturation(fmt.name)
    below, _ = neighbours(x, fmt)
    assert sigmoid_rounds_to_one(x, fmt) and not sigmoid_rounds_to_one(below, fmt)
    with mpmath.workprec(300):  # and by the closed form: sigmoid(x) >= 1 - 2**-(p+1) from x = ln(2**(p+1) - 1) on
        threshold = mpmath.log(2 ** (fmt.precision + 1) - 1)
        assert below < threshold <= x
    y = exp_overflow(fmt.name)
    _, above = neighbours(y, fmt)
    assert exp_is_finite(y, fmt) and not exp_is_finite(above, fmt)


def test_bfloat16_thresholds():
    assert sigmoid_saturation("bfloat16") == 6.25  # ln(2**9 - 1) = 6.2364, the bfloat16 values there are 1/32 apart
    assert sigmoid_rounds_to_one(6.25, BF16) and not sigmoid_rounds_to_one(6.25 - 2**-5, BF16)
    assert exp_overflow("bfloat16") == 88.5 and exp_is_finite(88.5, BF16) and not exp_is_finite(89.0, BF16)


def test_float32_and_float64_thresholds_match_extreme_logits_yaml():
    yaml = YAML(typ="safe", pure=True)
    data = yaml.load((REPO / "cases" / "extreme_logits.yaml").read_text(encoding="utf-8"))
    cases = {c["id"]: c for c in data["cases"]}
    # each threshold case lists the last value before, the value at, and the first after the boundary
    f32 = cases["f32-saturation-pos-t0"]
    assert "ln(2**25 - 1)" in f32["why"] and f32["logits"][2:5] == ["0x1.154244p+4", "0x1.154246p+4", "0x1.154248p+4"]
    assert sigmoid_saturation("float32") == float.fromhex("0x1.154246p+4")
    assert sigmoid_saturation("float64") == float.fromhex(cases["f64-saturation-pos-t0"]["logits"][3]) == float.fromhex("0x1.2b708872320e2p+5")
    # exp overflows "from x = ln(FLT_MAX) on": the largest finite one is the last value before it
    assert "ln(FLT_MAX)" in cases["f32-exp-overflow-t0"]["why"]
    assert exp_overflow("float32") == float.fromhex(cases["f32-exp-overflow-t0"]["logits"][1]) == float.fromhex("0x1.62e42ep+6")
    assert exp_overflow("float64") == float.fromhex("0x1.62e42fefa39efp+9") == math.log(np.finfo(np.float64).max)


def test_special_is_resolved_per_dtype(tmp_path):
    case = one_case(
        tmp_path,
        "    logits: {special: [smallest_subnormal, -largest_finite, sigmoid_saturation, exp_overflow, neg_zero, nan]}\n"
        "    target: [0, 0, 1, 1, 0.5, 0.5]\n    dtypes: [float16, float32, float64]\n",
    )
    assert isinstance(case.values["logits"], PerDtype) and case.shape == (6,)
    for fmt in (F16, F32, F64):
        logits = case.inputs(fmt)["logits"]
        assert logits.dtype == fmt.numpy_dtype
        assert logits[0] == fmt.smallest_subnormal and logits[1] == -fmt.largest
        assert logits[2] == sigmoid_saturation(fmt.name) and logits[3] == exp_overflow(fmt.name)
        assert logits[4] == 0 and np.signbit(logits[4]) and np.isnan(logits[5])
        assert case.exact(fmt)["logits"][2] == sigmoid_saturation(fmt.name)
    assert case.inputs(F16)["logits"][2] == 8.3203125 and case.inputs(F32)["logits"][2] == np.float32(float.fromhex("0x1.154246p+4"))


# ---------------------------------------------------------------------------------------------
# random


RANDOM = "    logits: {{random: {{distribution: {dist}, shape: {shape}, seed: {seed}{extra}}}}}\n    target: {target}\n"


def random_case(folder, dist="normal", shape="[50]", seed=7, extra="", target=None):
    target = target or json.dumps(np.zeros(json.loads(shape)).tolist())
    return one_case(folder, RANDOM.format(dist=dist, shape=shape, seed=seed, extra=extra, target=target))


def test_random_is_seeded_numpy_draws(tmp_path):
    case = random_case(tmp_path, extra=", loc: 1, scale: 3")
    assert case.values["logits"].dtype == np.float64
    assert np.array_equal(case.values["logits"], np.random.default_rng(7).normal(1.0, 3.0, size=(50,)))
    assert np.array_equal(case.inputs(F32)["logits"], case.values["logits"].astype(np.float32))  # rounded once, to nearest
    assert case.generated["logits"].description == "random normal(loc=1, scale=3), seed 7, shape [50]"


def test_random_is_reproducible_and_differs_per_seed(tmp_path):
    first = random_case(tmp_path, dist="logistic").values["logits"]
    again = random_case(tmp_path, dist="logistic").values["logits"]
    other = random_case(tmp_path, dist="logistic", seed=8).values["logits"]
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.array_equal(first, np.random.default_rng(7).logistic(0.0, 1.0, size=(50,)))


def test_random_uniform_and_shape(tmp_path):
    case = random_case(tmp_path, dist="uniform", shape="[4, 25]", extra=', low: "-0.5", high: 2')
    values = case.values["logits"]
    assert case.shape == values.shape == (4, 25)
    assert values.min() >= -0.5 and values.max() < 2
    assert np.array_equal(values, np.random.default_rng(7).uniform(-0.5, 2.0, size=(4, 25)))


# ---------------------------------------------------------------------------------------------
# product: every input against every target


def test_product_grid(tmp_path):
    case = one_case(
        tmp_path,
        "    logits: {linspace: [-2, 2, 5]}\n    target: [0, 0.5, 1]\n    weight: [1, 2, 3]\n    product: true\n",
    )
    assert case.product and case.shape == (5, 3)
    inputs = case.inputs(F32)
    assert inputs["logits"].shape == inputs["target"].shape == (5, 3)
    assert inputs["logits"][:, 0].tolist() == [-2, -1, 0, 1, 2] and np.all(inputs["logits"] == inputs["logits"][:, :1])
    assert inputs["target"][0].tolist() == [0, 0.5, 1] and np.all(inputs["target"] == inputs["target"][:1])
    assert inputs["weight"].tolist() == [1, 2, 3]  # broadcasts along the targets
    for array in inputs.values():
        assert array.flags.writeable and array.flags.c_contiguous
    assert not case.values["logits"].flags.writeable  # the exact values are views of the 1-D values


def test_product_of_special_and_generated_target(tmp_path):
    case = one_case(
        tmp_path,
        "    logits: {special: [zero, sigmoid_saturation]}\n    target: {linspace: [0, 1, 3]}\n    product: true\n    dtypes: [float16, float32]\n",
    )
    assert case.shape == (2, 3)
    for fmt in (F16, F32):
        logits = case.inputs(fmt)["logits"]
        assert logits.shape == (2, 3) and np.all(logits[1] == sigmoid_saturation(fmt.name))


def test_without_product_shapes_must_match(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: {linspace: [0, 1, 5]}\n    target: [0, 1]\n")
    problem = single_problem(path)
    assert (problem.line, problem.case, problem.field) == (7, "a", "target")
    assert "(2,)" in problem.message and "(5,)" in problem.message and "product: true" in problem.message


# ---------------------------------------------------------------------------------------------
# The schema: what it accepts and rejects, and the loader agrees

GOOD = {"id": "a", "why": "w", "target": [0, 1, 1]}


def doc(**fields):
    return {"schema_version": 1, "description": "d", "cases": [{**GOOD, **fields}]}


SCHEMA_CASES = {
    # accepted
    "linspace": (True, doc(logits={"linspace": [-1, "0x1p+0", 3]})),
    "logspace": (True, doc(logits={"logspace": [-1, 1, 3]})),
    "logspace-signs": (True, doc(logits={"logspace": [0, 0, 1], "signs": "negative"}, target=[0])),
    "all-finite-product": (True, doc(logits={"all_finite": "bfloat16"}, product=True)),
    "special": (True, doc(logits={"special": ["zero", "-smallest_normal", "nan"]})),
    "random-normal": (True, doc(logits={"random": {"distribution": "normal", "shape": [3], "seed": 0, "loc": 1, "scale": "0.5"}})),
    "random-uniform": (True, doc(probs={"random": {"distribution": "uniform", "shape": [3], "seed": 1, "low": 0, "high": 1}})),
    "generated-target-weight": (True, doc(logits=[1, 2, 3], target={"linspace": [0, 1, 3]}, weight={"special": ["one_minus_epsilon"]})),
    # rejected
    "unknown-generator": (False, doc(logits={"arange": [0, 3]})),
    "two-generators": (False, doc(logits={"linspace": [0, 1, 3], "logspace": [0, 1, 3]})),
    "extra-key": (False, doc(logits={"linspace": [0, 1, 3], "step": 1})),
    "signs-on-linspace": (False, doc(logits={"linspace": [0, 1, 3], "signs": "both"})),
    "linspace-two-items": (False, doc(logits={"linspace": [0, 1]})),
    "linspace-num-zero": (False, doc(logits={"linspace": [0, 1, 0]})),
    "linspace-num-fraction": (False, doc(logits={"linspace": [0, 1, 2.5]})),
    "linspace-bad-number": (False, doc(logits={"linspace": ["zero", 1, 3]})),
    "logspace-bad-signs": (False, doc(logits={"logspace": [0, 1, 3], "signs": "all"})),
    "all-finite-float32": (False, doc(logits={"all_finite": "float32"})),
    "special-unknown": (False, doc(logits={"special": ["tiny"]})),
    "special-empty": (False, doc(logits={"special": []})),
    "random-no-seed": (False, doc(logits={"random": {"distribution": "normal", "shape": [3]}})),
    "random-no-shape": (False, doc(logits={"random": {"distribution": "normal", "seed": 1}})),
    "random-unknown-distribution": (False, doc(logits={"random": {"distribution": "gamma", "shape": [3], "seed": 1}})),
    "random-uniform-with-loc": (False, doc(logits={"random": {"distribution": "uniform", "shape": [3], "seed": 1, "loc": 0}})),
    "random-negative-seed": (False, doc(logits={"random": {"distribution": "normal", "shape": [3], "seed": -1}})),
    "generator-inside-a-list": (False, doc(logits=[{"linspace": [0, 1, 3]}])),
    "product-not-boolean": (False, doc(logits=[1, 2, 3], product="yes")),
}


@pytest.mark.parametrize("name", list(SCHEMA_CASES))
def test_schema_accepts_and_rejects_generators(tmp_path, name):
    valid, data = SCHEMA_CASES[name]
    assert jsonschema.Draft7Validator(schema()).is_valid(data) == valid
    path = write(tmp_path, json.dumps(data, indent=1))
    if valid:
        assert load_file(path)
    else:
        with pytest.raises(CaseError) as info:
            load_file(path)
        assert all(p.case == "a" and p.field and p.line for p in info.value.problems), info.value


def test_schema_describes_every_generator():
    definitions = schema()["definitions"]
    names = [item["$ref"].rsplit("/", 1)[1] for item in definitions["generator"]["oneOf"]]
    assert names == list(generators.GENERATORS)
    for name in names:
        definition = definitions[name]
        assert definition["description"] and definition["additionalProperties"] is False
        assert definition["required"] == [name]
    for distribution in generators.DISTRIBUTIONS:
        assert definitions[f"random_{distribution}"]["additionalProperties"] is False
    assert set(definitions["special"]["properties"]["special"]["items"]["enum"]) == {
        sign + name for name in generators.SPECIAL_NAMES for sign in ("", "-")
    }
    assert schema()["definitions"]["case"]["properties"]["product"]["type"] == "boolean"


# ---------------------------------------------------------------------------------------------
# Every problem a CaseError naming the file, the line, the case and the field; never a traceback


def single_problem(path: Path):
    with pytest.raises(CaseError) as info:
        load_file(path)
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    assert str(path) in str(info.value) and problems[0].file == str(path)
    return problems[0]


SEMANTIC = {
    # name: (case body from line 6 on, line, field, words)
    "num-zero": ("    logits: {linspace: [0, 1, 0]}\n    target: [0]\n", 6, "logits.linspace.2", ["minimum of 1"]),
    "num-over-limit": ("    logits: {linspace: [0, 1, 5000000]}\n    target: [0]\n", 6, "logits.linspace.2", ["5000000", "4194304", "CONFORMANCE_MAX_ELEMENTS"]),
    "logspace-over-limit": ("    logits: {logspace: [0, 1, 3000000], signs: both}\n    target: [0]\n", 6, "logits.logspace", ["6000000"]),
    "unknown-special": ("    logits: {special: [zero, huge]}\n    target: [0, 0]\n", 6, "logits.special.1", ["'huge'", "smallest_subnormal"]),
    "all-finite-float32": ("    logits: {all_finite: float32}\n    target: [0]\n", 6, "logits.all_finite", ["float32", "float16"]),
    "logspace-min-over-max": ("    logits: {logspace: [3, -3, 5]}\n    target: [0, 0, 0, 0, 0]\n", 6, "logits.logspace", ["greater than"]),
    "uniform-low-over-high": (
        "    logits:\n      random:\n        distribution: uniform\n        shape: [2]\n        seed: 1\n        low: 3\n        high: 1\n    target: [0, 0]\n",
        11, "logits.random.low", ["low", "greater than", "high"],
    ),
    "random-without-seed": (
        "    logits:\n      random:\n        distribution: normal\n        shape: [2]\n    target: [0, 0]\n", 7, "logits.random", ["seed"],
    ),
    "random-bad-distribution": (
        "    logits: {random: {distribution: gamma, shape: [2], seed: 1}}\n    target: [0, 0]\n", 6, "logits.random.distribution", ["gamma", "normal"],
    ),
    "random-zero-scale": ("    logits: {random: {distribution: normal, shape: [2], seed: 1, scale: 0}}\n    target: [0, 0]\n", 6, "logits.random.scale", ["positive"]),
    "random-over-limit": ("    logits: {random: {distribution: normal, shape: [100000, 100000], seed: 1}}\n    target: [0]\n", 6, "logits.random", ["10000000000"]),
    "infinite-stop": ("    logits: {linspace: [0, .inf, 3]}\n    target: [0, 0, 0]\n", 6, "logits.linspace.1", ["finite"]),
    "unknown-generator": ("    logits: {arange: [0, 3]}\n    target: [0, 0, 0]\n", 6, "logits", ["'arange'", "linspace"]),
    "extra-key": ("    logits: {linspace: [0, 1, 3], step: 2}\n    target: [0, 0, 0]\n", 6, "logits.step", ["unknown key 'step'"]),
    "shape-after-generation": ("    logits: {linspace: [0, 1, 3]}\n    target: {linspace: [0, 1, 4]}\n", 7, "target", ["(4,)", "(3,)"]),
    "weight-after-generation": ("    logits: [1, 2]\n    target: [0, 1]\n    weight: {special: [zero, zero, zero]}\n", 8, "weight", ["does not broadcast"]),
    "product-of-2d": ("    logits: [[1, 2], [3, 4]]\n    target: [0, 1]\n    product: true\n", 6, "logits", ["1-D"]),
    "product-over-limit": (
        "    logits: {linspace: [0, 1, 3000]}\n    target: {linspace: [0, 1, 3000]}\n    product: true\n", 8, "product", ["9000000", "limit"],
    ),
}


@pytest.mark.parametrize("name", list(SEMANTIC))
def test_problems_name_file_line_case_and_field(tmp_path, name):
    body, line, field, words = SEMANTIC[name]
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n" + body)
    problem = single_problem(path)
    assert (problem.line, problem.case, problem.field) == (line, "a", field), str(problem)
    text = str(problem)
    assert f"{path}:{line}:" in text and "'a'" in text and repr(field) in text
    for word in words:
        assert word in text, text


def test_problems_of_several_generator_cases_are_reported_together(tmp_path):
    path = write(
        tmp_path,
        HEAD
        + "  - {id: a, why: w, logits: {linspace: [0, 1, 0]}, target: [0]}\n"
        + "  - {id: b, why: w, logits: {logspace: [2, 1, 3]}, target: [0, 0, 0]}\n"
        + "  - {id: c, why: w, logits: {special: [nope]}, target: [0]}\n",
    )
    with pytest.raises(CaseError) as info:
        load_file(path)
    assert sorted((p.case, p.line) for p in info.value.problems) == [("a", 4), ("b", 5), ("c", 6)]


def test_expand_reports_generator_errors_directly():
    with pytest.raises(GeneratorError) as info:
        expand({"linspace": [0, 1, 0]})
    assert info.value.where == ("linspace", 2)
    with pytest.raises(GeneratorError, match="unknown special value"):
        expand({"special": ["-nope"]})
    with pytest.raises(GeneratorError, match="all_finite takes"):
        expand({"all_finite": "float32"})


# ---------------------------------------------------------------------------------------------
# The size limit


def test_size_limit_default_and_environment(tmp_path, monkeypatch):
    assert MAX_ELEMENTS == 2**22
    monkeypatch.delenv("CONFORMANCE_MAX_ELEMENTS", raising=False)
    assert generators.max_elements() == 2**22
    body = "    logits: {all_finite: float16}\n    target: [0, 1]\n    product: true\n"
    assert one_case(tmp_path, body).shape == (63488, 2)
    monkeypatch.setenv("CONFORMANCE_MAX_ELEMENTS", "1000")
    problem = single_problem(write(tmp_path, HEAD + "  - id: a\n    why: w\n" + body))
    assert (problem.case, problem.field, problem.line) == ("a", "logits.all_finite", 6)
    assert "63488" in problem.message and "1000" in problem.message
    monkeypatch.setenv("CONFORMANCE_MAX_ELEMENTS", "100000")  # each tensor fits, the grid does not
    problem = single_problem(write(tmp_path, HEAD + "  - id: a\n    why: w\n" + body))
    assert problem.field == "product" and "126976" in problem.message
    monkeypatch.setenv("CONFORMANCE_MAX_ELEMENTS", "lots")
    problem = single_problem(write(tmp_path, HEAD + "  - id: a\n    why: w\n" + body))
    assert "CONFORMANCE_MAX_ELEMENTS" in problem.message and problem.case == "a"


def test_size_limit_is_checked_before_allocating(monkeypatch):
    monkeypatch.setattr(generators, "MAX_ELEMENTS", 10)
    started = time.perf_counter()
    for spec in ({"linspace": [0, 1, 10**15]}, {"random": {"distribution": "normal", "shape": [10**9, 10**9], "seed": 1}}, {"all_finite": "bfloat16"}):
        with pytest.raises(GeneratorError, match="over the limit of 10"):
            expand(spec)
    assert time.perf_counter() - started < 0.5
    assert expand({"linspace": [0, 1, 10]}).shape == (10,)


# ---------------------------------------------------------------------------------------------
# The vectorised rounding of float64 values agrees with the exact one


@pytest.mark.parametrize("fmt", [F16, BF16, F32, F64], ids=lambda f: f.name)
def test_round_float64_agrees_with_round_to_format(fmt):
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**64, size=4000, dtype=np.uint64)
    values = bits.view(np.float64)
    values = values[np.isfinite(values)]
    with np.errstate(over="ignore"):
        scaled = np.ldexp(rng.uniform(-2, 2, 4000), rng.integers(fmt.emin - fmt.precision - 3, fmt.emax + 3, 4000))
    largest, tiny = fmt.largest, fmt.smallest_subnormal
    edges = np.array(
        [0.0, -0.0, np.inf, -np.inf, largest, -largest, tiny, tiny / 2, -tiny / 2, tiny * 0.75, tiny * 1.5, tiny * 2.5,
         largest * (1 + 2.0**-fmt.precision), largest * (1 + 2.0**-fmt.precision) * (1 - 2.0**-52), 1 + 2.0**-fmt.precision,
         1 + 3 * 2.0**-fmt.precision, fmt.smallest_normal * (1 - 2.0**-fmt.precision)]
    )
    for sample in (values, scaled, edges):
        got = round_float64(sample, fmt).astype(np.float64)
        want = np.array([round_to_format(Fraction(v) if math.isfinite(v) and v else v, fmt) if v else v for v in sample])
        assert np.array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))
    assert np.isnan(round_float64(np.array([np.nan]), fmt)[0])


def test_round_exact_takes_object_and_broadcast_arrays():
    exact = np.empty(3, dtype=object)
    exact[:] = [Fraction(1, 3), -0.0, math.inf]
    grid = np.broadcast_to(exact[None, :], (4, 3))
    rounded = round_exact(grid, F32)
    assert rounded.shape == (4, 3) and rounded.dtype == np.float32 and rounded.flags.writeable
    assert rounded[3, 0] == np.float32(1 / 3) and np.signbit(rounded[2, 1]) and rounded[0, 2] == np.inf


# ---------------------------------------------------------------------------------------------
# Load time, and explain


def test_loading_a_large_generated_case_is_fast(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: {all_finite: float16}\n    target: [0, 0.5, 1]\n    product: true\n")
    load_file(path)  # imports and caches warm
    started = time.perf_counter()
    (case,) = load_file(path)
    loaded = time.perf_counter() - started
    for fmt in (F16, BF16, F32, F64):
        assert case.inputs(fmt)["logits"].shape == (63488, 3)
    total = time.perf_counter() - started
    assert loaded < 0.5 and total < 1.0, (loaded, total)


def test_explain_a_generated_case(tmp_path, capsys):
    path = write(
        tmp_path,
        HEAD + "  - id: sweep\n    why: every float16\n    logits: {all_finite: float16}\n    target: [0, 0.5, 1]\n"
        "    product: true\n    dtypes: [float16]\n    reductions: [none, mean]\n",
    )
    assert main(["explain", f"{path}::sweep"]) == 0
    out = capsys.readouterr().out
    assert "shape: (63488, 3)" in out
    assert "logits: all_finite float16 → 63488 values from -65504 to 65504" in out
    assert "first 4: ['-0x1.ffcp+15', '-0x1.ff8p+15', '-0x1.ff4p+15', '-0x1.ffp+15']" in out
    assert "last 4: ['0x1.ffp+15', '0x1.ff4p+15', '0x1.ff8p+15', '0x1.ffcp+15']" in out
    assert "target: ['0x0p+0', '0x1p-1', '0x1p+0'] (each against every logits value" in out
    assert "190464 elements; the first and last 4" in out and "[63487, 2] exact" in out
    assert "mean: over 190464 elements, not computed here" in out
    assert len(out.splitlines()) < 40  # not 63488 values


def test_explain_a_small_generated_case(tmp_path, capsys):
    path = write(
        tmp_path,
        HEAD + "  - id: s\n    why: named points\n    logits: {special: [zero, sigmoid_saturation]}\n"
        "    target: {linspace: [0, 1, 2]}\n    dtypes: [float16, float32]\n    reductions: [none, sum]\n",
    )
    assert main(["explain", f"{path}::s"]) == 0
    out = capsys.readouterr().out
    float16, float32 = out.split("== float16", 1)[1].split("== float32", 1)
    assert "logits: special [zero, sigmoid_saturation] → 2 values from 0 to 8.3203125" in float16
    assert "values: ['0x0p+0', '0x1.0a4p+3']" in float16
    assert "values: ['0x0p+0', '0x1.154246p+4']" in float32
    assert "target: linspace [0, 1, 2] → 2 values from 0 to 1" in out
    assert "bce_with_logits (bce_with_logits, sigmoid_bce) sum:" in float32  # small: computed
