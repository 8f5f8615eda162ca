"""The case loader (conformance/cases.py) and the case-file schema (conformance/schema/cases.schema.json)."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from ruamel.yaml import YAML

from conformance import generators
from conformance.cases import LOADER_CHECKS, CaseError, Problem, case_files, load, load_file, schema, structural_schema
from conformance.dtypes import get_format

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "cases").glob("*.yaml"))
F32, F64 = get_format("float32"), get_format("float64")

HEAD = "schema_version: 1\ndescription: test file\ncases:\n"  # a case's `- id:` is then on line 4


def write(folder: Path, text: str, name: str = "c.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def one_case(folder: Path, body: str, name: str = "c.yaml"):
    """Load a file holding a single case whose fields (after `- id: a` and `why: w`) are ``body``."""
    return load_file(write(folder, HEAD + "  - id: a\n    why: w\n" + body, name))


def problems_of(path: Path) -> tuple[CaseError, list[Problem]]:
    with pytest.raises(CaseError) as info:
        load_file(path)
    return info.value, info.value.problems


def raw_yaml(path: Path):
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 2)
    return yaml.load(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# The shipped files and the schema itself


def test_schema_is_a_valid_draft7_schema():
    jsonschema.Draft7Validator.check_schema(schema())
    assert schema()["$schema"].startswith("http://json-schema.org/draft-07/")


def test_shipped_case_files_exist():
    assert {p.name for p in SHIPPED} >= {"seed.yaml", "extreme_logits.yaml", "moderate_logits.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_file_validates_against_schema_and_loads(path):
    errors = list(jsonschema.Draft7Validator(schema()).iter_errors(raw_yaml(path)))
    assert not errors, [e.message for e in errors]
    cases = load_file(path)
    assert cases
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        assert case.kind in ("logits", "probs")
        assert case.values["target"].shape == case.shape
        assert case.line is not None and case.line > 0
        assert case.full_name == f"{path.stem}/{case.id}"


def test_load_all_shipped_cases_together():
    cases = load([REPO / "cases"])
    assert len(cases) == sum(len(load_file(p)) for p in SHIPPED)
    assert len({c.full_name for c in cases}) == len(cases)


def test_seed_case_contents():
    blog = {c.id: c for c in load_file(REPO / "cases" / "seed.yaml")}["blog-3x3"]
    assert blog.kind == "logits"
    assert blog.shape == (3, 3)
    assert blog.ops == ("bce_with_logits", "sigmoid_bce")
    assert blog.dtypes == ("float32", "float64")
    assert blog.expected("float64") == {"mean": "0.80000682967651184"}
    assert blog.inputs(F32)["logits"].dtype == np.float32
    assert blog.inputs(F32)["logits"][0, 0] == np.float32(1.9072)


# ---------------------------------------------------------------------------------------------
# YAML 1.2 numbers, exact strings, and the cast to each dtype


def test_yaml12_exponent_without_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 1e-7 as a string; the loader must read it as the float 1e-7
    (case,) = one_case(tmp_path, "    logits: [1e-7, 1E7]\n    target: [0, 1]\n")
    small, big = case.values["logits"]
    assert isinstance(small, Fraction) and small == Fraction(1e-7)
    assert big == 10_000_000
    assert case.inputs(F64)["logits"][0] == 1e-7
    assert case.inputs(F32)["logits"][0] == np.float32(1e-7)


def test_yaml12_special_floats_and_signed_zero(tmp_path):
    (case,) = one_case(tmp_path, "    logits: [.inf, -.inf, .nan, -0.0, 0.0]\n    target: [0, 0, 0, 0, 0]\n")
    values = list(case.values["logits"])
    assert values[0] == math.inf and values[1] == -math.inf and math.isnan(values[2])
    assert values[3] == 0.0 and math.copysign(1.0, values[3]) == -1.0
    assert math.copysign(1.0, values[4]) == 1.0
    for fmt in (F32, F64):
        cast = case.inputs(fmt)["logits"]
        assert cast.dtype == fmt.numpy_dtype
        assert cast[0] == np.inf and cast[1] == -np.inf and np.isnan(cast[2])
        assert cast[3] == 0 and np.signbit(cast[3]) and not np.signbit(cast[4])


def test_yaml12_ints_and_no_yaml11_booleans_or_octals(tmp_path):
    # `id: yes` is a string in YAML 1.2 (a boolean in 1.1); 010 is ten, 0o10 is eight
    path = write(tmp_path, HEAD + "  - id: yes\n    why: on\n    logits: [3, -2, 010, 0o10, 0x10]\n    target: [0, 1, 0, 1, 0]\n")
    (case,) = load_file(path)
    assert case.id == "yes" and case.why == "on"
    assert list(case.values["logits"]) == [3, -2, 10, 8, 16]
    assert all(isinstance(v, Fraction) for v in case.values["logits"])


def test_strings_are_read_exactly(tmp_path):
    (case,) = one_case(
        tmp_path,
        '    logits: ["0.1", "0x1.8p+1", "-0x1p-2", "1e-7", " 2.5 ", "-0.0", "-0x0p+0", "inf", "-infinity", "nan"]\n'
        "    target: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]\n",
    )
    v = list(case.values["logits"])
    assert v[0] == Fraction(1, 10) and isinstance(v[0], Fraction)
    assert v[1] == 3 and v[2] == Fraction(-1, 4)
    assert v[3] == Fraction(1, 10**7)  # the decimal, not the binary double nearest to it
    assert v[4] == Fraction(5, 2)
    assert math.copysign(1.0, v[5]) == -1.0 and math.copysign(1.0, v[6]) == -1.0
    assert v[7] == math.inf and v[8] == -math.inf and math.isnan(v[9])


def test_inputs_cast_with_one_correct_rounding(tmp_path):
    # 1 + 2**-24 + 1e-25 lies just above the float32 midpoint between 1 and 1 + 2**-23: rounded once it
    # is 1 + 2**-23; rounded to float64 first (exactly onto the midpoint), then ties-to-even gives 1.0
    (case,) = one_case(
        tmp_path,
        '    logits: ["0.1", "1.0000000596046447753906251", "1.0000000596046447753906249", "3.4028235677973366e38", "1e-46", "-0.1", "3.4028235677973367e38"]\n'
        "    target: [0, 0, 0, 0, 0, 0, 0]\n",
    )
    f32 = case.inputs(F32)["logits"]
    assert f32.dtype == np.float32
    assert f32[0] == np.float32(0.1)
    assert f32[1] == np.nextafter(np.float32(1), np.float32(2))
    assert f32[2] == np.float32(1)
    assert f32[3] == np.float32(np.finfo(np.float32).max)  # below the overflow threshold: no inf
    assert f32[4] == 0  # below half the smallest subnormal
    assert f32[5] == np.float32(-0.1)
    assert f32[6] == np.inf  # just above FLT_MAX + half an ULP (2**128 - 2**103)
    f64 = case.inputs(F64)["logits"]
    assert f64[0] == 0.1 and f64[5] == -0.1
    assert f64[1] == 1.0000000596046448  # float64 of the decimal


def test_inputs_cast_to_half_precision_formats(tmp_path):
    (case,) = one_case(
        tmp_path, '    logits: ["0.1", 70000, "0x1p-24"]\n    target: [0, 0, 0]\n    dtypes: [float16, bfloat16]\n'
    )
    f16 = case.inputs(get_format("float16"))["logits"]
    assert f16.dtype == np.float16
    assert f16[0] == np.float16(0.1) and np.isinf(f16[1]) and f16[2] == np.float16(2**-24)
    bf16 = case.inputs(get_format("bfloat16"))["logits"]
    assert str(bf16.dtype) == "bfloat16"
    assert float(bf16[1]) == 70144.0  # 70000 rounded to 8 significant bits


def test_defaults_and_per_case_overrides(tmp_path):
    path = write(
        tmp_path,
        "schema_version: 1\ndescription: d\n"
        "defaults: {dtypes: [float64], reductions: [sum], tolerance: {max_ulp: 8}}\n"
        "cases:\n"
        "  - {id: a, why: w, probs: [0.5], target: [1]}\n"
        "  - {id: b, why: w, logits: [1.5], target: [1], dtypes: [float16], reductions: [none, mean],\n"
        "     tolerance: {float16: {abs_floor: 0.001}}, ops: [sigmoid_bce], weight: 2, pos_weight: [3]}\n",
    )
    a, b = load_file(path)
    assert (a.kind, a.ops, a.dtypes, a.reductions, a.tolerance) == ("probs", ("bce",), ("float64",), ("sum",), {"max_ulp": 8})
    assert (b.kind, b.ops, b.dtypes, b.reductions) == ("logits", ("sigmoid_bce",), ("float16",), ("none", "mean"))
    assert b.tolerance == {"max_ulp": 8, "float16": {"abs_floor": 0.001}}
    assert b.shape == (1,) and b.values["weight"].shape == () and b.values["pos_weight"].shape == (1,)
    assert a.line == 5 and b.line == 6


# ---------------------------------------------------------------------------------------------
# Bad files: each a CaseError naming the file, and the case, field and line where they apply


def assert_problem(path: Path, *, line=None, case=None, field=None, words=()):
    """Exactly one problem; the error's text names the file, line, case and field; returns it."""
    exc, problems = problems_of(path)
    assert len(problems) == 1, [str(p) for p in problems]
    (problem,) = problems
    text = str(exc)
    assert str(path) in text and problem.file == str(path)
    if line is not None:
        assert problem.line == line, str(problem)
        assert f"{path}:{line}:" in text
    if case is not None:
        assert problem.case == case and repr(case) in text
    if field is not None:
        assert problem.field == field and repr(field) in text
    for word in words:
        assert word in text, text
    return problem


def test_yaml_syntax_error(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [1, 2\n    target: [0, 1]\n")
    problem = assert_problem(path, words=["YAML error"])
    assert problem.line in (6, 7)  # where the unclosed list starts or where the parser gave up


def test_yaml_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [1]\n    logits: [2]\n    target: [0]\n")
    assert_problem(path, words=["YAML error", "duplicate key"])


def test_unknown_top_level_field(tmp_path):
    path = write(tmp_path, "schema_version: 1\ndescription: d\nextras: 1\ncases:\n  - {id: a, why: w, logits: [1], target: [0]}\n")
    assert_problem(path, words=["unknown field", "extras"])


def test_unknown_case_field_typo(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logit: [1]\n    target: [0]\n")
    problem = assert_problem(path, case="a", words=["unknown field", "'logit'"])
    assert problem.line in (4, 6)  # the case, or the misspelt key


def test_missing_target(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [1]\n")
    assert_problem(path, line=4, case="a", words=["'target' is a required property"])


def test_both_logits_and_probs(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [1]\n    probs: [0.5]\n    target: [0]\n")
    assert_problem(path, line=4, case="a", words=["exactly one of `logits` and `probs`", "not both"])


def test_neither_logits_nor_probs(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    target: [0]\n")
    problem = assert_problem(path, line=4, case="a", words=["exactly one of `logits` and `probs`"])
    assert "not both" not in problem.message


def test_duplicate_ids(tmp_path):
    path = write(tmp_path, HEAD + "  - {id: a, why: w, logits: [1], target: [0]}\n  - {id: a, why: x, logits: [2], target: [1]}\n")
    assert_problem(path, line=5, case="a", field="id", words=["duplicate id", "line 4"])


def test_target_shape_mismatch(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [1, 2]\n    target: [0, 1, 1]\n")
    assert_problem(path, line=7, case="a", field="target", words=["(3,)", "(2,)"])


def test_weight_that_does_not_broadcast(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [[1, 2], [3, 4]]\n    target: [[0, 1], [1, 0]]\n    weight: [1, 2, 3]\n")
    assert_problem(path, line=8, case="a", field="weight", words=["does not broadcast", "(3,)", "(2, 2)"])


def test_weight_that_would_grow_the_input_is_rejected(tmp_path):
    # broadcasts with the input, but to a bigger shape than the input's: not allowed
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [1, 2]\n    target: [0, 1]\n    weight: [[1], [2]]\n")
    assert_problem(path, line=8, case="a", field="weight", words=["does not broadcast"])


def test_broadcasting_weight_is_accepted(tmp_path):
    (case,) = one_case(tmp_path, "    logits: [[1, 2], [3, 4]]\n    target: [[0, 1], [1, 0]]\n    weight: [1, 2]\n    pos_weight: 3\n")
    assert case.values["weight"].shape == (2,) and case.values["pos_weight"].shape == ()


def test_ragged_nested_list(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [[1, 2], [3]]\n    target: [[0, 1], [1, 1]]\n")
    assert_problem(path, line=6, case="a", field="logits", words=["ragged"])


def test_ragged_expect_literal(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [1, 2]\n    target: [0, 1]\n    expect: {none: [[1], [2, 3]]}\n")
    assert_problem(path, case="a", field="expect.none", words=["ragged"])


def test_expect_literal_with_its_own_tolerance_loads(tmp_path):
    (case,) = one_case(tmp_path, "    logits: [1, 2]\n    target: [0, 1]\n    expect: {mean: {value: 0.52613434, rtol: 1.0e-6, atol: 0}, "
                       "float32: {none: {value: [\"0.3\", 0.1], atol: 1.0e-3}}}\n")
    assert case.expected("float32") == {"mean": {"value": 0.52613434, "rtol": 1e-6, "atol": 0}, "none": {"value": ["0.3", 0.1], "atol": 1e-3}}


@pytest.mark.parametrize(
    "literal, field, words",
    [
        ("{value: 1, rtol: -1.0e-6}", "expect.mean", ["rtol must be a finite number >= 0", "-1e-06"]),
        ("{value: 1, rtol: .nan}", "expect.mean.rtol", ["rtol must be a finite number >= 0", "NaN"]),
        ("{value: 1, atol: .inf}", "expect.mean", ["atol must be a finite number >= 0", "inf"]),
        ('{value: 1, rtol: "0.1"}', "expect.mean", ["rtol must be a finite number", "'0.1'"]),
        ("{value: 1, rtol: 0.1, places: 3}", "expect.mean", ["unknown key 'places'", "{value: V, rtol: R, atol: A}"]),
        ("{value: 1}", "expect.mean", ["neither rtol nor atol", "write the number alone"]),
        ("{rtol: 0.1}", "expect.mean", ["no `value`", "{value: V, rtol: R, atol: A}"]),
        ("{value: about one, rtol: 0.1}", "expect.mean", ["'about one' is not a number"]),
        ("{value: [1, 2], rtol: 0.1}", "expect.mean", ["[1, 2]", "not a number"]),
    ],
    ids=["negative-rtol", "nan-rtol", "infinite-atol", "string-rtol", "unknown-key", "no-tolerance", "no-value", "word", "list-for-mean"],
)
def test_bad_expect_literal_with_its_own_tolerance(tmp_path, literal, field, words):
    path = write(tmp_path, HEAD + f"  - id: a\n    why: w\n    logits: [1, 2]\n    target: [0, 1]\n    expect: {{mean: {literal}}}\n")
    assert_problem(path, line=8, case="a", field=field, words=words)


def test_correctly_rounded_tolerance_is_half_an_ulp_without_a_floor(tmp_path):
    from conformance.verdicts import Tolerance, tolerance_for

    path = write(
        tmp_path,
        "schema_version: 1\ndescription: d\ndefaults: {tolerance: {correctly_rounded: true}}\ncases:\n"
        "  - {id: a, why: w, logits: [1], target: [0]}\n"
        "  - {id: b, why: w, logits: [1], target: [0], tolerance: {max_ulp: 2, float16: {correctly_rounded: true}}}\n",
    )
    a, b = load_file(path)
    assert a.tolerance == {"max_ulp": 0.5, "abs_floor": 0.0}
    assert tolerance_for("float32", a.tolerance) == Tolerance(0.5, 0.0)
    assert tolerance_for("float32", b.tolerance) == Tolerance(2.0, 0.0)  # the case's max_ulp over the default's
    assert tolerance_for("float16", b.tolerance) == Tolerance(0.5, 0.0)
    assert tolerance_for("float64", {"correctly_rounded": True}) == Tolerance(0.5, 0.0)


@pytest.mark.parametrize(
    "tolerance, field, words",
    [
        ("{max_ulp: 0}", "tolerance.max_ulp", ["max_ulp 0 is below 0.5", "correctly rounded", "max_ulp: 0.5", "correctly_rounded: true"]),
        ("{float32: {max_ulp: 0.25}}", "tolerance.float32.max_ulp", ["max_ulp 0.25 is below 0.5", "unrounded exact value"]),
        ("{correctly_rounded: true, max_ulp: 2}", "tolerance", ["correctly_rounded: true stands for {max_ulp: 0.5, abs_floor: 0}", "alone"]),
        ("{float64: {correctly_rounded: true, abs_floor: 0}}", "tolerance.float64", ["give it alone"]),
        ("{correctly_rounded: false}", "tolerance.correctly_rounded", ["takes true only", "False"]),
    ],
    ids=["max-ulp-zero", "max-ulp-quarter", "correctly-rounded-and-max-ulp", "correctly-rounded-and-floor", "correctly-rounded-false"],
)
def test_tolerance_below_correct_rounding_or_contradicting_it(tmp_path, tolerance, field, words):
    path = write(tmp_path, HEAD + f"  - id: a\n    why: w\n    logits: [1, 2]\n    target: [0, 1]\n    tolerance: {tolerance}\n")
    assert_problem(path, line=8, case="a", field=field, words=words)


def test_max_ulp_below_half_in_defaults_is_named_there(tmp_path):
    path = write(tmp_path, "schema_version: 1\ndescription: d\ndefaults: {tolerance: {max_ulp: 0.1}}\ncases:\n  - {id: a, why: w, logits: [1], target: [0]}\n")
    assert_problem(path, line=3, field="defaults.tolerance.max_ulp", words=["max_ulp 0.1 is below 0.5"])


@pytest.mark.parametrize(
    "value, shown",
    [('"0x1.gp+1"', "0x1.gp+1"), ('"abc"', "abc"), ('"1.2.3"', "1.2.3"), ("true", "True"), ("null", "None"), ("{x: 1}", "'x'")],
    ids=["bad-hex", "non-numeric", "two-dots", "boolean", "null", "mapping"],
)
def test_value_that_is_not_a_number(tmp_path, value, shown):
    path = write(tmp_path, HEAD + f"  - id: a\n    why: w\n    logits: [1, {value}]\n    target: [0, 1]\n")
    assert_problem(path, line=6, case="a", field="logits", words=["not a number", shown])


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("dtypes", "[float32, float8]", ["'float8' is not one of"]),
        ("ops", "[softmax_bce]", ["'softmax_bce' is not one of"]),
        ("reductions", "[max]", ["'max' is not one of"]),
    ],
)
def test_unknown_dtype_op_reduction(tmp_path, field, value, words):
    path = write(tmp_path, HEAD + f"  - id: a\n    why: w\n    logits: [1]\n    target: [0]\n    {field}: {value}\n")
    problem = assert_problem(path, line=8, case="a", words=words)
    assert problem.field.startswith(field)


def test_op_not_valid_for_logits(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [1]\n    target: [0]\n    ops: [bce_with_logits, bce]\n")
    assert_problem(path, line=8, case="a", field="ops", words=["bce", "do not take `logits`"])


def test_op_not_valid_for_probs(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    probs: [0.5]\n    target: [0]\n    ops: [sigmoid_bce]\n")
    assert_problem(path, line=8, case="a", field="ops", words=["sigmoid_bce", "do not take `probs`"])


def test_pos_weight_on_probs(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    probs: [0.5]\n    target: [1]\n    pos_weight: [2]\n")
    assert_problem(path, line=8, case="a", field="pos_weight", words=["logits only"])


def test_python_tag_is_rejected_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = write(
        tmp_path,
        HEAD + f'  - id: a\n    why: w\n    logits: !!python/object/apply:os.system ["touch {marker}"]\n    target: [0]\n',
    )
    exc, _ = problems_of(path)
    assert str(path) in str(exc)
    assert not marker.exists()


def test_python_tag_on_a_scalar_is_rejected(tmp_path):
    path = write(tmp_path, HEAD + "  - id: a\n    why: w\n    logits: [!!python/name:os.system 1]\n    target: [0]\n")
    _, problems = problems_of(path)
    assert {(p.line, p.case, p.field) for p in problems} == {(6, "a", "logits.0"), (6, "a", "logits")}
    assert any("YAML tag" in p.message and "python/name:os.system" in p.message for p in problems)


@pytest.mark.parametrize(
    "text",
    [
        "!!python/name:os.system\n",  # the whole document
        HEAD + "  - id: a\n    why: w\n    !!python/name:os.system logits: [1]\n    target: [0]\n",  # a key
        HEAD + "  - id: a\n    why: !!str w\n    logits: [1]\n    target: [0]\n",  # even a standard tag
    ],
    ids=["document", "key", "standard-tag"],
)
def test_tags_anywhere_are_rejected(tmp_path, text):
    exc, problems = problems_of(write(tmp_path, text))
    assert any("YAML tag" in p.message for p in problems), str(exc)


@pytest.mark.parametrize(
    "body",
    [
        '    logits: !!python/object/apply:os.system ["1"]\n    target: [0]\n',
        "    logits: [1]\n    target: !!python/object/new:builtins.list [0]\n",
    ],
    ids=["logits", "target"],
)
def test_python_tag_on_a_collection_is_rejected(tmp_path, body):
    with pytest.raises(CaseError):
        one_case(tmp_path, body)


def test_python_tag_on_a_case_mapping_is_not_executed(tmp_path):
    marker = tmp_path / "pwned2"
    path = write(
        tmp_path,
        HEAD + f'  - !!python/object/apply:os.system\n    args: ["touch {marker}"]\n',
    )
    with pytest.raises(CaseError):
        load_file(path)
    assert not marker.exists()


def test_hex_and_decimal_strings_beyond_every_format_round_to_inf_or_zero(tmp_path):
    (case,) = one_case(tmp_path, '    logits: ["0x1p+2000", "-1e999999999", "1e-999999999"]\n    target: [0, 0, 0]\n')
    logits = case.inputs(F32)["logits"]
    assert np.isposinf(logits[0]) and np.isneginf(logits[1]) and logits[2] == 0


def test_long_hex_string_is_read_exactly(tmp_path):
    (case,) = one_case(tmp_path, '    logits: ["0x1.000001000000001p+0"]\n    target: [0]\n')
    assert case.values["logits"][0] == 1 + Fraction(1, 2**24) + Fraction(1, 2**60)
    assert case.inputs(F32)["logits"][0] == np.nextafter(np.float32(1), np.float32(2))


def test_several_problems_are_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        HEAD
        + "  - id: a\n    why: w\n    logit: [1]\n    target: [0]\n"  # lines 4-7: unknown field
        + "  - id: b\n    why: w\n    logits: [1]\n    target: [0]\n    dtypes: [float8]\n",  # lines 8-12
    )
    exc, problems = problems_of(path)
    assert len(problems) >= 2
    assert {p.case for p in problems} == {"a", "b"}
    assert "logit" in str(exc) and "float8" in str(exc)
    assert [p.line for p in problems if p.case == "b"] == [12]


def test_several_semantic_problems_are_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        HEAD
        + "  - id: a\n    why: w\n    logits: [1, 2]\n    target: [0]\n"  # target shape, line 7
        + "  - id: b\n    why: w\n    probs: [0.5]\n    target: [0]\n    pos_weight: 2\n"  # line 12
        + "  - id: a\n    why: w\n    logits: [1]\n    target: [0]\n",  # duplicate, line 13
    )
    exc, problems = problems_of(path)
    assert len(problems) == 3
    assert {(p.case, p.field, p.line) for p in problems} == {("a", "target", 7), ("b", "pos_weight", 12), ("a", "id", 13)}


def test_problem_text_format():
    assert str(Problem("f.yaml", "bad", 3, "c1", "logits")) == "f.yaml:3: case 'c1' field 'logits': bad"
    assert str(Problem("f.yaml", "bad")) == "f.yaml: bad"
    error = CaseError([Problem("a.yaml", "one", 1), Problem("b.yaml", "two", 2)])
    assert str(error) == "a.yaml:1: one\nb.yaml:2: two"


def test_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(CaseError, match="cannot read"):
        load_file(tmp_path / "missing.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + b"  - {id: a, why: caf\xe9, logits: [1], target: [0]}\n")
    with pytest.raises(CaseError, match="not UTF-8"):
        load_file(path)


# ---------------------------------------------------------------------------------------------
# The schema and the loader agree on every purely structural problem

GOOD_CASE = {"id": "a", "why": "w", "logits": [1.5, "-0x1p-3"], "target": [0, 1]}


def document(*cases, **top):
    data = {"schema_version": 1, "description": "d", "cases": list(cases) or [GOOD_CASE]}
    data.update(top)
    return {k: v for k, v in data.items() if v is not DROP}


def case_with(**fields):
    entry = {**GOOD_CASE, **fields}
    return {k: v for k, v in entry.items() if v is not DROP}


DROP = object()

STRUCTURAL = {
    # valid documents
    "minimal": document(),
    "probs": document({"id": "p", "why": "w", "probs": [[0.25, "0.5"]], "target": [[1, 0]]}),
    "scalar-tensors": document(case_with(logits=2, target="0.5")),
    "specials-as-strings": document(case_with(logits=["inf", "-infinity", "nan", ".inf"], target=[0, 1, 0, 1])),
    "all-optional-fields": document(
        case_with(
            weight=[1, 2], pos_weight=3, ops=["bce_with_logits"], dtypes=["float16", "bfloat16"], reductions=["none"],
            expect={"mean": "0.5", "none": [1, 2], "float32": {"sum": "0x1p+0"}},
            tolerance={"max_ulp": 1, "float64": {"abs_floor": 0}},
        ),
        defaults={"dtypes": ["float64"], "reductions": ["mean", "sum"], "tolerance": {"abs_floor": 1e-30}},
    ),
    "id-with-punctuation": document(case_with(id="A1_b.c+d-e")),
    # invalid documents
    "no-schema-version": document(schema_version=DROP),
    "schema-version-2": document(schema_version=2),
    "no-description": document(description=DROP),
    "empty-description": document(description=""),
    "no-cases": document(cases=DROP),
    "empty-cases": document(cases=[]),
    "cases-not-a-list": document(cases={"a": GOOD_CASE}),
    "case-not-a-mapping": document(cases=[5]),
    "unknown-top-level": document(extra=1),
    "unknown-default": document(defaults={"ops": ["bce"]}),
    "empty-defaults-dtypes": document(defaults={"dtypes": []}),
    "repeated-dtype": document(case_with(dtypes=["float32", "float32"])),
    "unknown-dtype": document(case_with(dtypes=["float128"])),
    "unknown-op": document(case_with(ops=["softmax"])),
    "empty-ops": document(case_with(ops=[])),
    "unknown-reduction": document(case_with(reductions=["max"])),
    "no-id": document(case_with(id=DROP)),
    "id-not-a-string": document(case_with(id=7)),
    "id-with-space": document(case_with(id="a b")),
    "id-leading-dash": document(case_with(id="-a")),
    "no-why": document(case_with(why=DROP)),
    "empty-why": document(case_with(why="")),
    "no-target": document(case_with(target=DROP)),
    "unknown-case-field": document(case_with(logit=[1])),
    "logits-mapping": document(case_with(logits={"a": 1})),
    "logits-null": document(case_with(logits=None)),
    "logits-boolean": document(case_with(logits=[True, 1])),
    "logits-bad-hex": document(case_with(logits=["0x1.gp+1", 1])),
    "logits-hex-without-exponent": document(case_with(logits=["0x1.8", 1])),
    "target-word": document(case_with(target=["one", 0])),
    "weight-nested-bad": document(case_with(weight=[[1, "x"]])),
    "negative-tolerance": document(case_with(tolerance={"max_ulp": -1})),
    "empty-tolerance": document(case_with(tolerance={})),
    "tolerance-unknown-key": document(case_with(tolerance={"float32": {"rel": 1}})),
    "expect-unknown-key": document(case_with(expect={"max": "1"})),
    "expect-mean-list": document(case_with(expect={"mean": [1, 2]})),
    "expect-bad-number": document(case_with(expect={"float64": {"mean": "about 0.8"}})),
    "expect-empty-dtype": document(case_with(expect={"float64": {}})),
}


@pytest.mark.parametrize("name", list(STRUCTURAL))
def test_schema_and_loader_agree_on_structure(tmp_path, name):
    data = STRUCTURAL[name]
    schema_valid = jsonschema.Draft7Validator(schema()).is_valid(data)
    path = write(tmp_path, json.dumps(data, indent=1))  # JSON is YAML 1.2
    try:
        load_file(path)
        loader_accepts = True
    except CaseError:
        loader_accepts = False
    assert schema_valid == loader_accepts
    assert schema_valid == (name in {"minimal", "probs", "scalar-tensors", "specials-as-strings", "all-optional-fields", "id-with-punctuation"})


# ---------------------------------------------------------------------------------------------
# The schema states every rule of the loader that JSON Schema can express: run both over the same files.
# Whatever the schema rejects the loader rejects (it validates the schema's structural part first); what
# the schema accepts and the loader rejects is only what a JSON Schema cannot say, each with its reason.

CANNOT_EXPRESS = {  # reason -> why no JSON Schema (draft 7) states it
    "shape": "array shapes: a target of the input's shape, a weight that broadcasts, rectangular lists, 1-D for product",
    "unique ids": "uniqueness of one field across the items of a list (uniqueItems compares whole items)",
    "NaN": "JSON has no NaN, and JSON Schema's bounds let a NaN through (every comparison with it is false)",
    "string values": "the value a numeric string stands for (\"1.5\", \"0x1p+1\"): a pattern sees characters, not numbers",
    "draws": "the values of random draws and of logspace (nearest float64 powers of ten), known only once generated",
    "relations": "a relation between two numbers (logspace min_exp10 <= max_exp10, random low <= high)",
    "sizes": "generator sizes against MAX_ELEMENTS, which $CONFORMANCE_MAX_ELEMENTS sets at run time",
    "some invalid value": "that at least one value of a case with invalid_input is invalid (over strings, generators, draws)",
    "integer digits": "an integer literal's digits: draft 7's integers include integral floats (1e40 is one)",
    "yaml": "the YAML text (tags, ambiguous plain scalars): the schema sees the data the YAML stands for",
}

CASE = "  - id: a\n    why: w\n"
LOGITS = "    logits: [1.5, -2]\n    target: [0, 1]\n"
PROBS = "    probs: [0.25, 0.5]\n    target: [0, 1]\n"

# name -> (the case's fields after id and why, None where the loader accepts it, else the reason it rejects
# it: "schema" where the full schema rejects it too, or a key of CANNOT_EXPRESS)
CORPUS = {
    "logits": (LOGITS, None),
    "probs": (PROBS, None),
    "invalid-input-probs": ("    probs: [1.5]\n    target: [0]\n    invalid_input: a negative control\n", None),
    "probs-linspace": ("    probs: {linspace: [0, 1, 5]}\n    target: {linspace: [1, 0, 5]}\n", None),
    "probs-linspace-one-point": ("    probs: {linspace: [0.5, 7, 1]}\n    target: [1]\n", None),  # stop is not a point
    "probs-special": ("    probs: {special: [zero, -zero, smallest_subnormal, one_minus_epsilon]}\n    target: [0, 1, 0, 1]\n", None),
    "weight-special": (LOGITS + "    weight: {special: [largest_finite, exp_overflow]}\n", None),
    "weight-logspace": (LOGITS + "    weight: {logspace: [-3, 3, 2]}\n", None),
    "logits-random": ("    logits: {random: {distribution: normal, shape: [2], seed: 1, scale: 2}}\n    target: [0, 1]\n", None),
    "correctly-rounded": (LOGITS + "    tolerance: {correctly_rounded: true, float16: {max_ulp: 2}}\n", None),
    "half-ulp": (LOGITS + "    tolerance: {float32: {max_ulp: 0.5, abs_floor: 0}}\n", None),
    "own-tolerance": (LOGITS + "    expect: {mean: {value: 0.52613434, rtol: 1.0e-6}, float64: {none: {value: [1, 2], atol: 1}}}\n", None),
    "expect-40-digits": (LOGITS + '    expect: {mean: "0.' + "1" * 40 + '"}\n', None),
    # the full schema rejects these, as the loader does
    "both-kinds": (LOGITS + "    probs: [0.5, 0.5]\n", "schema"),
    "no-kind": ("    target: [0, 1]\n", "schema"),
    "op-of-probs-on-logits": (LOGITS + "    ops: [bce]\n", "schema"),
    "op-of-logits-on-probs": (PROBS + "    ops: [sigmoid_bce]\n", "schema"),
    "pos-weight-on-probs": (PROBS + "    pos_weight: 2\n", "schema"),
    "probs-above-one": ("    probs: [[0.5, 1.5]]\n    target: [[0, 1]]\n", "schema"),
    "target-negative": ("    logits: [1]\n    target: [-0.5]\n", "schema"),
    "weight-negative": (LOGITS + "    weight: [1, -1]\n", "schema"),
    "weight-infinite": (LOGITS + "    weight: .inf\n", "schema"),
    "pos-weight-negative-infinite": (LOGITS + "    pos_weight: -.inf\n", "schema"),
    "probs-all-finite": ("    probs: {all_finite: float16}\n    target: 0\n", "schema"),
    "target-special-outside": ("    logits: [1]\n    target: {special: [largest_finite]}\n", "schema"),
    "weight-special-nan": (LOGITS + "    weight: {special: [nan, zero]}\n", "schema"),
    "probs-linspace-outside": ("    probs: {linspace: [0, 2, 3]}\n    target: [0, 1, 0]\n", "schema"),
    "weight-linspace-negative-start": (LOGITS + "    weight: {linspace: [-1, 1, 2]}\n", "schema"),
    "linspace-infinite": ("    logits: {linspace: [0, .inf, 3]}\n    target: [0, 1, 0]\n", "schema"),
    "linspace-infinite-string": ('    logits: {linspace: ["-inf", 1, 3]}\n    target: [0, 1, 0]\n', "schema"),
    "logspace-nan-string": ('    logits: {logspace: [0, "nan", 3]}\n    target: [0, 1, 0]\n', "schema"),
    "random-zero-scale": ("    logits: {random: {distribution: logistic, shape: [2], seed: 1, scale: 0}}\n    target: [0, 1]\n", "schema"),
    "random-infinite-loc": ("    logits: {random: {distribution: normal, shape: [2], seed: 1, loc: -.inf}}\n    target: [0, 1]\n", "schema"),
    "random-too-many-dimensions": ("    logits: {random: {distribution: normal, shape: [" + ", ".join(["1"] * 33) + "], seed: 1}}\n    target: 0\n", "schema"),
    "label-smoothing-above-one": (LOGITS + "    label_smoothing: 1.5\n", "schema"),
    "max-ulp-zero": (LOGITS + "    tolerance: {max_ulp: 0}\n", "schema"),
    "max-ulp-below-half": (LOGITS + "    tolerance: {float64: {max_ulp: 0.25}}\n", "schema"),
    "correctly-rounded-false": (LOGITS + "    tolerance: {correctly_rounded: false}\n", "schema"),
    "correctly-rounded-and-max-ulp": (LOGITS + "    tolerance: {correctly_rounded: true, max_ulp: 2}\n", "schema"),
    "correctly-rounded-and-floor": (LOGITS + "    tolerance: {float32: {correctly_rounded: true, abs_floor: 0}}\n", "schema"),
    "own-tolerance-negative-rtol": (LOGITS + "    expect: {mean: {value: 1, rtol: -1.0e-6}}\n", "schema"),
    "own-tolerance-unknown-key": (LOGITS + "    expect: {mean: {value: 1, rtol: 0.1, places: 3}}\n", "schema"),
    "own-tolerance-without-tolerance": (LOGITS + "    expect: {sum: {value: 1}}\n", "schema"),
    "own-tolerance-without-value": (LOGITS + "    expect: {sum: {rtol: 0.1}}\n", "schema"),
    "own-tolerance-word": (LOGITS + "    expect: {float32: {mean: {value: about one, atol: 0.1}}}\n", "schema"),
    "own-tolerance-string-rtol": (LOGITS + '    expect: {mean: {value: 1, rtol: "0.1"}}\n', "schema"),
    "own-tolerance-list-for-mean": (LOGITS + "    expect: {mean: {value: [1, 2], rtol: 0.1}}\n", "schema"),
    "expect-41-digits": (LOGITS + '    expect: {mean: "0.00' + "1" * 41 + 'e3"}\n', "schema"),
    "expect-41-digits-in-own-tolerance": (LOGITS + '    expect: {none: {value: ["1.' + "0" * 40 + '", 2], atol: 1}}\n', "schema"),
    # the schema accepts these, and the loader rejects them: what JSON Schema cannot say
    "target-shape": ("    logits: [1, 2]\n    target: [0, 1, 1]\n", "shape"),
    "weight-does-not-broadcast": (LOGITS + "    weight: [1, 2, 3]\n", "shape"),
    "ragged": ("    logits: [[1, 2], [3]]\n    target: [[0, 1], [1]]\n", "shape"),
    "ragged-expect": (LOGITS + "    expect: {none: [[1, 2], [3]]}\n", "shape"),
    "product-of-2d": ("    logits: [[1, 2]]\n    target: [0, 1]\n    product: true\n", "shape"),
    "probs-nan": ("    probs: [.nan]\n    target: [0]\n", "NaN"),
    "weight-nan": (LOGITS + "    weight: .nan\n", "NaN"),
    "tolerance-nan": (LOGITS + "    tolerance: {abs_floor: .nan}\n", "NaN"),
    "own-tolerance-nan": (LOGITS + "    expect: {mean: {value: 1, atol: .nan}}\n", "NaN"),
    "label-smoothing-nan": (LOGITS + "    label_smoothing: .nan\n", "NaN"),
    "probs-string-above-one": ('    probs: ["1.5"]\n    target: [0]\n', "string values"),
    "weight-string-negative": (LOGITS + '    weight: "-0x1p+0"\n', "string values"),
    "label-smoothing-string": (LOGITS + '    label_smoothing: "2"\n', "string values"),
    "random-string-scale": ('    logits: {random: {distribution: normal, shape: [2], seed: 1, scale: "-1"}}\n    target: [0, 1]\n', "string values"),
    "probs-random-normal": ("    probs: {random: {distribution: normal, shape: [3], seed: 0}}\n    target: [0, 1, 0]\n", "draws"),
    "probs-logspace-above-one": ("    probs: {logspace: [0, 1, 2]}\n    target: [0, 1]\n", "draws"),
    "logspace-reversed": ("    logits: {logspace: [1, 0, 2]}\n    target: [0, 1]\n", "relations"),
    "uniform-reversed": ("    logits: {random: {distribution: uniform, shape: [2], seed: 1, low: 1, high: 0}}\n    target: [0, 1]\n", "relations"),
    "linspace-too-large": ("    logits: {linspace: [0, 1, 100000000]}\n    target: 0\n", "sizes"),
    "invalid-input-needless": (PROBS + "    invalid_input: nothing here is invalid\n", "some invalid value"),
    "expect-41-digit-integer": (LOGITS + "    expect: {sum: " + "1" * 41 + "}\n", "integer digits"),
    "yaml-tag": ("    logits: [!!float 1, 2]\n    target: [0, 1]\n", "yaml"),
    "yaml-ambiguous-scalar": ("    logits: [1_000, 2]\n    target: [0, 1]\n", "yaml"),
}


def schema_accepts(data) -> bool:
    """The full schema, with its patterns read as JSON Schema (ECMA 262) means them, as editors read it."""
    return generators.SchemaValidator(schema()).is_valid(data)


def loader_accepts(path: Path) -> bool:
    try:
        load_file(path)
    except CaseError:
        return False
    return True


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_schema_and_the_loader_over_the_same_files(tmp_path, name):
    body, rejected_for = CORPUS[name]
    path = write(tmp_path, HEAD + CASE + body)
    schema_ok, loader_ok = schema_accepts(raw_yaml(path)), loader_accepts(path)
    assert schema_ok or not loader_ok, "the loader accepts what the schema rejects"
    assert loader_ok == (rejected_for is None), rejected_for
    assert schema_ok == (rejected_for in CANNOT_EXPRESS or rejected_for is None), (
        "the schema rejects it" if not schema_ok else f"the schema accepts what the loader rejects: {rejected_for}"
    )


def test_duplicate_ids_pass_the_schema_but_not_the_loader(tmp_path):
    data = document(GOOD_CASE, case_with(why="again"))
    assert schema_accepts(data) and "unique ids" in CANNOT_EXPRESS
    with pytest.raises(CaseError, match="duplicate id"):
        load_file(write(tmp_path, json.dumps(data)))


def test_every_shipped_file_passes_the_full_and_the_structural_schema():
    for path in SHIPPED:
        data = raw_yaml(path)
        assert schema_accepts(data), path
        assert generators.SchemaValidator(structural_schema()).is_valid(data), path


def test_the_loader_strips_only_marked_rules_from_the_schema():
    """The structural schema is the full one without the rules marked x-loader-checks (and nothing else)."""

    def marked(node) -> int:
        if isinstance(node, dict):
            return (LOADER_CHECKS in node) + sum(marked(v) for v in node.values())
        return sum(marked(v) for v in node) if isinstance(node, list) else 0

    assert marked(schema()) >= 8 and marked(structural_schema()) == 0
    assert set(structural_schema()["definitions"]) == set(schema()["definitions"])
    assert structural_schema()["definitions"]["unit_input"] == {}


# ---------------------------------------------------------------------------------------------
# Several files and folders

CASE_FILE = HEAD + "  - {id: a, why: w, logits: [1], target: [0]}\n"


def test_same_file_stem_in_two_folders_clashes(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = write(tmp_path / "one", CASE_FILE, "same.yaml")
    second = write(tmp_path / "two", CASE_FILE, "same.yml")
    with pytest.raises(CaseError) as info:
        load([tmp_path / "one", tmp_path / "two"])
    (problem,) = info.value.problems
    assert problem.file == str(second)
    assert "'same'" in problem.message and str(first) in problem.message and "clash" in problem.message


def test_same_file_named_twice_is_not_a_clash(tmp_path):
    path = write(tmp_path, CASE_FILE)
    assert [c.full_name for c in load([path, path])] == ["c/a", "c/a"]


def test_distinct_stems_load_in_stable_order(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, CASE_FILE, "b.yaml")
    write(tmp_path / "sub", CASE_FILE, "a.yaml")
    write(tmp_path, "not a case file", "notes.txt")
    assert [p.name for p in case_files([tmp_path])] == ["b.yaml", "a.yaml"]  # sorted by path
    assert sorted(c.full_name for c in load([tmp_path])) == ["a/a", "b/a"]


def test_problems_of_several_files_are_reported_together(tmp_path):
    write(tmp_path, HEAD + "  - {id: a, why: w, logits: [1], target: [0, 1]}\n", "bad1.yaml")
    write(tmp_path, HEAD + "  - {id: a, why: w, probs: [1], target: [0], ops: [bce_with_logits]}\n", "bad2.yaml")
    write(tmp_path, CASE_FILE, "good.yaml")
    with pytest.raises(CaseError) as info:
        load([tmp_path])
    assert sorted(Path(p.file).name for p in info.value.problems) == ["bad1.yaml", "bad2.yaml"]


def test_case_files_on_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty", "x", "readme.txt")
    with pytest.raises(CaseError, match="no case files") as info:
        case_files([tmp_path / "empty"])
    assert info.value.problems[0].file == str(tmp_path / "empty")
    with pytest.raises(CaseError, match="no case files"):
        load([tmp_path / "empty"])


def test_case_files_on_a_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CaseError, match="no such file or folder") as info:
        case_files([missing])
    assert info.value.problems[0].file == str(missing)
