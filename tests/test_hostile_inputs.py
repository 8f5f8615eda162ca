"""Hostile inputs to the case loader ("fail closed"): each gets a ``CaseError`` naming the file, the
case and the field (or a documented meaning), through the loader and through `validate`; never a
hang, never a traceback, never a silently accepted wrong meaning.

The same rules hold for known-divergence files and for the tolerances file, read by the same loader.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from conformance import divergences
from conformance.cases import MAX_EXPECT_DIGITS, CaseError, case_files, load, load_file
from conformance.cli import main
from conformance.generators import SchemaValidator, _ecma_regex
from conformance.verdicts import parse_tolerances

HEAD = "schema_version: 1\ndescription: test file\ncases:\n"  # a case's `- id:` is then on line 4
CASE = "  - id: a\n    why: w\n"  # its fields from line 6 on
GOOD = HEAD + CASE + "    logits: [1]\n    target: [0]\n"
DIVERGENCE = "- id: x\n  api: a\n  where: {quantity: value}\n  reason: r\n  source: s\n"

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
needs_symlinks = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("CONFORMANCE_MAX_ELEMENTS", "CONFORMANCE_MAX_FILE_BYTES", "CONFORMANCE_CASES"):
        monkeypatch.delenv(name, raising=False)


def write(folder: Path, text: str, name: str = "c.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(paths, timeout: float = 20) -> CaseError:
    """The CaseError that loading ``paths`` raises, in a thread: a loader that blocks (on a FIFO) fails
    the test instead of hanging it, and the FIFOs it blocks on are opened for writing to release it."""
    outcome: dict = {}

    def attempt():
        try:
            outcome["cases"] = load(paths)
        except BaseException as exc:  # noqa: BLE001 - reported below, whatever it is
            outcome["error"] = exc

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for path in paths:
            for fifo in [Path(path)] + (list(Path(path).rglob("*")) if Path(path).is_dir() else []):
                if fifo.is_fifo():
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the blocked open returns
        thread.join(5)
        pytest.fail(f"loading {paths} blocked for {timeout} s")
    assert "error" in outcome, f"accepted: {[c.full_name for c in outcome['cases']]}"
    assert isinstance(outcome["error"], CaseError), repr(outcome["error"])
    return outcome["error"]


def check(error: CaseError, path: Path, *words: str, line=None, case=None, field=None) -> None:
    """Some problem of ``error`` names ``path`` (and the line, case and field given) and says ``words``."""
    text = str(error)
    assert all(p.file for p in error.problems), text
    wanted = [
        p for p in error.problems
        if p.file == str(path) and (line is None or p.line == line) and (case is None or p.case == case)
        and (field is None or p.field == field) and all(word in p.message for word in words)
    ]
    assert wanted, text
    assert "Traceback" not in text


def validate(capsys, path: Path) -> str:
    """`python -m conformance validate PATH`: it fails, and says why on stderr, without a traceback."""
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err and "problem(s)" in err
    return err


# ---------------------------------------------------------------------------------------------
# 1. A FIFO (or any path that is not a regular file) is refused, never opened


@needs_fifo
def test_a_fifo_named_as_a_case_file_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    check(refused([fifo]), fifo, "named pipe (FIFO)", "not a regular file", "never opened")
    with pytest.raises(CaseError, match="named pipe"):
        load_file(fifo)
    assert "named pipe" in validate(capsys, fifo)


@needs_fifo
def test_a_fifo_inside_a_cases_folder_is_refused_not_skipped(tmp_path, capsys):
    write(tmp_path, GOOD, "good.yaml")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    check(refused([tmp_path]), fifo, "named pipe (FIFO)", "never opened")
    assert str(fifo) in validate(capsys, tmp_path)


def test_a_device_is_refused(tmp_path):
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    check(refused(["/dev/null"]), Path("/dev/null"), "character device", "never opened")


# ---------------------------------------------------------------------------------------------
# 2. Symlink loops: an error naming the path, no hang


@needs_symlinks
def test_a_file_symlink_loop_in_a_cases_folder_is_an_error(tmp_path, capsys):
    write(tmp_path, GOOD, "good.yaml")
    os.symlink("b.yaml", tmp_path / "a.yaml")
    os.symlink("a.yaml", tmp_path / "b.yaml")
    error = refused([tmp_path])
    check(error, tmp_path / "a.yaml", "symlink loop")
    check(error, tmp_path / "b.yaml", "symlink loop")
    check(refused([tmp_path / "a.yaml"]), tmp_path / "a.yaml", "symlink loop")  # not "no such file"
    assert "symlink loop" in validate(capsys, tmp_path)


@needs_symlinks
def test_a_folder_symlink_to_its_parent_is_an_error(tmp_path, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    write(cases, GOOD, "good.yaml")
    os.symlink("..", cases / "up")
    check(refused([cases]), cases / "up" / "cases", "a symlink loop", f"this folder is {cases}")
    os.remove(cases / "up")
    os.symlink(".", cases / "here")
    check(refused([cases]), cases / "here", "a symlink loop")
    assert "symlink loop" in validate(capsys, cases)


@needs_symlinks
def test_a_broken_symlink_is_an_error_and_a_folder_symlink_is_followed(tmp_path):
    cases, more = tmp_path / "cases", tmp_path / "more"
    cases.mkdir()
    more.mkdir()
    write(cases, GOOD, "good.yaml")
    write(more, GOOD, "extra.yaml")
    os.symlink(more, cases / "more")
    assert [p.name for p in case_files([cases])] == ["good.yaml", "extra.yaml"]
    os.symlink(tmp_path / "nowhere.yaml", cases / "gone.yaml")
    check(refused([cases]), cases / "gone.yaml", "cannot read", "a broken symlink, to")
    check(refused([cases / "gone.yaml"]), cases / "gone.yaml", "no such file or folder (a broken symlink, to")


# ---------------------------------------------------------------------------------------------
# 3. An id ending in a newline: `$` in a schema pattern is the end of the string


def test_an_id_ending_in_a_newline_is_refused(tmp_path, capsys):
    path = write(tmp_path, HEAD + '  - id: "blog\\n"\n    why: w\n    logits: [1]\n    target: [0]\n')
    check(refused([path]), path, "is not an id", "no line breaks", line=4, field="id")
    assert "not an id" in validate(capsys, path)


def test_schema_patterns_end_at_the_end_of_the_string():
    assert _ecma_regex("^[a-z]+$").pattern == "^[a-z]+\\Z"
    assert _ecma_regex("^[$]\\$x$").pattern == "^[$]\\$x\\Z"  # a $ in a class or escaped is a dollar
    validator = SchemaValidator({"type": "string", "pattern": "^[a-z]+$"})
    assert validator.is_valid("blog") and not validator.is_valid("blog\n")


def test_a_known_divergence_id_ending_in_a_newline_is_refused(tmp_path):
    path = write(tmp_path, DIVERGENCE.replace("id: x", 'id: "x\\n"'), "div.yaml")
    with pytest.raises(CaseError) as info:
        divergences.load("rounded", [path])
    check(info.value, path, "is not an id", field="id")


# ---------------------------------------------------------------------------------------------
# 4. A path component too long for the file system


def test_a_file_name_too_long_is_an_error_naming_the_path(tmp_path, capsys):
    long_file = tmp_path / ("x" * 300 + ".yaml")
    long_folder = tmp_path / ("y" * 300) / "c.yaml"
    for path in (long_file, long_folder):
        check(refused([path]), path, "cannot read", "too long")
        with pytest.raises(CaseError, match="too long"):
            load_file(path)
    assert "too long" in validate(capsys, long_file)


# ---------------------------------------------------------------------------------------------
# 5. An `expect` literal of thousands of digits


@pytest.mark.parametrize(
    ("expect", "field"),
    [
        ("{mean: " + "9" * 2000 + "}", "expect.mean"),  # a YAML integer: beyond float64
        ('{float64: {mean: "0.' + "1" * 2000 + '"}}', "expect.float64.mean"),  # more digits than any check
        ("{none: [" + "9" * 2000 + "]}", "expect.none"),
    ],
    ids=["integer", "decimal-string", "in-a-list"],
)
def test_an_expect_literal_of_thousands_of_digits_is_refused(tmp_path, capsys, expect, field):
    path = write(tmp_path, GOOD + f"    expect: {expect}\n")
    check(refused([path]), path, "significant digits", f"at most {MAX_EXPECT_DIGITS}", line=8, case="a", field=field)  # the line of the literal
    assert "significant digits" in validate(capsys, path)


def test_an_expect_literal_of_forty_digits_is_checked(tmp_path, capsys):
    digits = "1.313261687518222834048995494967855641915"  # softplus(1) to 40 significant digits
    path = write(tmp_path, GOOD + f"    dtypes: [float64]\n    reductions: [mean]\n    expect: {{mean: '{digits}'}}\n")
    assert len(load([path])) == 1
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# 6. Tolerances: finite, non-negative, and held by a float64


@pytest.mark.parametrize(
    ("tolerance", "field", "words"),
    [
        ("{max_ulp: " + "9" * 400 + "}", "tolerance.max_ulp", ["not a 400-digit integer"]),
        ("{float32: {abs_floor: .inf}}", "tolerance.float32.abs_floor", ["not inf"]),
        ("{max_ulp: -.inf}", "tolerance.max_ulp", ["not -inf"]),
        ("{float16: {max_ulp: .nan}}", "tolerance.float16.max_ulp", ["not NaN"]),
    ],
    ids=["400-digits", "inf", "minus-inf", "nan"],
)
def test_a_tolerance_that_is_not_a_finite_float64_is_refused(tmp_path, capsys, tolerance, field, words):
    path = write(tmp_path, GOOD + f"    tolerance: {tolerance}\n")
    check(refused([path]), path, "a tolerance must be a finite number >= 0 that a float64 holds", *words, line=8, case="a", field=field)
    validate(capsys, path)


def test_a_nan_tolerance_in_the_defaults_is_refused(tmp_path):
    path = write(tmp_path, "schema_version: 1\ndescription: d\ndefaults: {tolerance: {max_ulp: .nan}}\ncases:\n"
                 + CASE + "    logits: [1]\n    target: [0]\n")
    check(refused([path]), path, "not NaN", line=3, field="defaults.tolerance.max_ulp")


def test_a_tolerances_file_is_held_to_the_same_rule():
    good = "float16: {max_ulp: 4, abs_floor: 0}\nbfloat16: {max_ulp: 4, abs_floor: 0}\nfloat32: {max_ulp: 4, abs_floor: 0}\nfloat64: {max_ulp: 4, abs_floor: 0}\n"
    assert parse_tolerances(good, "t.yaml")["float64"].max_ulp == 4
    for bad, field in (("max_ulp: 4,", "max_ulp: .inf,"), "float16.max_ulp"), (("abs_floor: 0}\nfloat64", "abs_floor: .nan}\nfloat64"), "float32.abs_floor"):
        with pytest.raises(CaseError) as info:
            parse_tolerances(good.replace(*bad, 1), "t.yaml")
        check(info.value, Path("t.yaml"), "a tolerance must be a finite number >= 0", field=field)


# ---------------------------------------------------------------------------------------------
# 7. Explicit YAML tags, every one of them


@pytest.mark.parametrize(
    ("body", "field", "tag"),
    [
        ("    logits: [!!float 1]\n    target: [0]\n", "logits.0", "!!float"),
        ("    logits: [1]\n    target: [0]\n    tolerance: !!omap [max_ulp: 3]\n", "tolerance", "!!omap"),
        ("    logits: [1]\n    target: [0]\n    gradients: !!bool true\n", "gradients", "!!bool"),
        ("    logits: [!<tag:yaml.org,2002:float> 1]\n    target: [0]\n", "logits.0", "!<tag:yaml.org,2002:float>"),
        ("    logits: [! 1]\n    target: [0]\n", "logits.0", "'!'"),
    ],
    ids=["float", "omap", "bool", "verbatim", "non-specific"],
)
def test_every_explicit_tag_is_refused(tmp_path, capsys, body, field, tag):
    path = write(tmp_path, HEAD + CASE + body)
    line = 6 if field.startswith("logits") else 8
    check(refused([path]), path, "YAML tag", tag, "not allowed", line=line, case="a", field=field)
    assert "YAML tag" in validate(capsys, path)


def test_a_tag_in_a_known_divergence_file_is_refused(tmp_path):
    path = write(tmp_path, DIVERGENCE.replace("reason: r", "reason: !!str r"), "div.yaml")
    with pytest.raises(CaseError) as info:
        divergences.load("rounded", [path])
    check(info.value, path, "YAML tag", "!!str", line=4, case="x", field="reason")


# ---------------------------------------------------------------------------------------------
# 8. %YAML directives other than 1.2 (and every other directive)


@pytest.mark.parametrize(
    ("directive", "words"),
    [
        ("%YAML 1.1", ["%YAML 1.1 is refused", "`no` is false"]),
        ("%YAML 1.3", ["%YAML 1.3 is refused"]),  # ruamel asserted on it: a traceback
        ("%TAG !e! tag:example.com,2000:", ["%TAG is refused"]),
        ("%FOO bar", ["%FOO is refused"]),
    ],
    ids=["yaml-1.1", "yaml-1.3", "tag", "reserved"],
)
def test_a_directive_other_than_yaml_1_2_is_refused(tmp_path, capsys, directive, words):
    path = write(tmp_path, f"{directive}\n---\n" + GOOD + "    gradients: no\n")
    check(refused([path]), path, *words, line=1)
    validate(capsys, path)


def test_a_yaml_1_2_directive_is_accepted(tmp_path):
    assert len(load([write(tmp_path, "%YAML 1.2\n---\n" + GOOD)])) == 1


def test_a_yaml_1_1_directive_in_a_known_divergence_file_is_refused(tmp_path):
    path = write(tmp_path, "%YAML 1.1\n---\n" + DIVERGENCE + "  dtypes: no\n", "div.yaml")
    with pytest.raises(CaseError) as info:
        divergences.load("rounded", [path])
    check(info.value, path, "%YAML 1.1 is refused", line=1)


# ---------------------------------------------------------------------------------------------
# 9. Plain scalars ruamel reads unlike the YAML 1.2 core schema


@pytest.mark.parametrize(
    ("body", "line", "field", "words"),
    [
        ("    logits: [1_000]\n    target: [0]\n", 6, "logits.0", ["'1_000' is ambiguous", "an integer", "a string"]),
        ("    logits: [1]\n    target: [0]\n    tolerance: {max_ulp: 1_0}\n", 8, "tolerance.max_ulp", ["'1_0' is ambiguous"]),
        ("    logits: [0b101]\n    target: [0]\n", 6, "logits.0", ["'0b101' is ambiguous"]),
        ("    logits: [.5e3]\n    target: [0]\n", 6, "logits.0", ["'.5e3' is ambiguous", "a string", "a float"]),
        ("    logits: [1]\n    target: [0]\n    invalid_input: 2001-12-14\n", 8, "invalid_input", ["a date"]),
    ],
    ids=["underscore", "underscore-tolerance", "binary", "exponent-without-sign", "date"],
)
def test_an_ambiguous_plain_scalar_is_refused(tmp_path, capsys, body, line, field, words):
    path = write(tmp_path, HEAD + CASE + body)
    check(refused([path]), path, *words, line=line, case="a", field=field)
    validate(capsys, path)


def test_a_merge_key_is_refused_but_aliases_are_fine(tmp_path):
    path = write(tmp_path, HEAD + "  - &a {id: a, why: w, logits: [1], target: [0]}\n  - {<<: *a, id: b}\n")
    check(refused([path]), path, "merge key", line=5, case="b", field="<<")
    quoted = write(tmp_path, HEAD + '  - {id: a, why: "1_000", logits: &x [1000, 0o10, 0x10], target: [0, 0, 0]}\n  - {id: b, why: w, logits: *x, target: [0, 0, 0]}\n', "ok.yaml")
    assert [list(c.values["logits"]) for c in load([quoted])] == [[1000, 8, 16]] * 2


def test_an_ambiguous_scalar_in_a_known_divergence_file_is_refused(tmp_path):
    path = write(tmp_path, DIVERGENCE.replace("source: s", "source: 1_000"), "div.yaml")
    with pytest.raises(CaseError) as info:
        divergences.load("rounded", [path])
    check(info.value, path, "'1_000' is ambiguous", line=5, case="x", field="source")


# ---------------------------------------------------------------------------------------------
# 10. Negative, infinite or NaN weights, unless the case says it means them


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ("    weight: [-1]\n", "weight", ["-1.0", "outside [0, inf)"]),
        ("    weight: [.nan]\n", "weight", ["nan"]),
        ("    weight: .inf\n", "weight", ["inf"]),
        ('    pos_weight: ["-0x1p-3"]\n', "pos_weight", ["-0.125"]),
        ("    pos_weight: {special: [nan]}\n", "pos_weight", ["nan", "(in float32)"]),
    ],
    ids=["negative", "nan", "inf", "negative-pos-weight", "special-nan-pos-weight"],
)
def test_an_invalid_weight_is_refused_unless_meant(tmp_path, capsys, body, field, words):
    path = write(tmp_path, HEAD + CASE + "    logits: [1]\n    target: [0]\n" + body)
    check(refused([path]), path, *words, "weights are finite and >= 0", "invalid_input", line=8, case="a", field=field)
    validate(capsys, path)
    meant = write(tmp_path, HEAD + CASE + "    logits: [1]\n    target: [0]\n" + body + "    invalid_input: what each API does with it\n", "meant.yaml")
    assert len(load([meant])) == 1


def test_label_smoothing_nan_or_out_of_range_is_refused(tmp_path):
    for value in (".nan", "1.5", "-0.1"):
        path = write(tmp_path, GOOD + f"    label_smoothing: {value}\n")
        check(refused([path]), path, "label_smoothing must be a number in [0, 1]", line=8, case="a", field="label_smoothing")
