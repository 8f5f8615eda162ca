"""The results file (format 2): its environment record, the schema, sweep elements, reading back,
and the timing kept apart."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from importlib import resources

import jsonschema
import numpy as np
import pytest

from conformance import __version__, numerics
from conformance.adapters import load_framework
from conformance.cli import main
from conformance.environment import describe, header, subnormal_probe
from conformance.results import FORMAT_VERSION, Result, ResultsError, ResultWriter, read_run, write_atomically

SEED = Path(__file__).resolve().parents[1] / "cases" / "seed.yaml"

SWEEP = """\
schema_version: 1
description: a small sweep
cases:
  - id: sweep-t0
    why: the hand formula across saturation
    sweep: true
    logits: [-40.0, -1.0, 0.0, 1.0, 20.0, 40.0]
    target: [0, 0, 0, 0, 0, 0]
    dtypes: [float32]
    reductions: [none, mean]
    gradients: false
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("CONFORMANCE_FRAMEWORK", "CONFORMANCE_CASES", "CONFORMANCE_OUT", "CONFORMANCE_MIN_TESTS"):
        monkeypatch.delenv(name, raising=False)


@cache
def validator() -> jsonschema.Draft7Validator:
    text = resources.files("conformance").joinpath("schema/results.schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_run_writes_the_environment_first_then_results_that_the_schema_accepts(tmp_path, capsys):
    main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(tmp_path)])
    records = lines(tmp_path / "rounded.jsonl")
    first = records[0]
    assert first["format"] == "bce-conformance-results" and first["format_version"] == FORMAT_VERSION
    environment = first["environment"]
    assert environment["framework"] == "rounded" and environment["framework_versions"] == {"bce-conformance": __version__}
    assert environment["numerics"]["numpy.simd_found"] == numerics.numpy_simd()["numpy.simd_found"]
    assert environment["subnormals"]["float32"] == {"flushed_to_zero": False, "inputs_as_zero": False}
    for key in ("python", "platform", "cpu", "device", "mpmath", "suite"):
        assert environment[key], key
    for record in records:
        errors = [e.message for e in validator().iter_errors(record)]
        assert not errors, (record, errors)
    assert all("format" not in r for r in records[1:]) and len(records) > 40
    exact = [r for r in records[1:] if r["verdict"] == "exact" and r["quantity"] == "value"]
    assert all(r["median_ulp"] <= r["max_ulp"] for r in exact)
    assert "environment: device cpu; subnormals: float32 subnormals kept" in capsys.readouterr().out


def test_the_schema_rejects_a_record_with_an_unknown_field_or_verdict():
    record = json.loads(Result("a/b", "f", "api", "bce", "float32", "none", "exact").to_json())
    assert not list(validator().iter_errors(record))
    assert list(validator().iter_errors({**record, "verdict": "fine"}))
    assert list(validator().iter_errors({**record, "maxulp": 1}))


def test_results_are_the_same_bytes_and_the_timing_is_apart(tmp_path, capsys):
    for name in ("one", "two"):
        assert main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(tmp_path / name)]) in (0, 1)
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "rounded.jsonl").read_bytes() == (two / "rounded.jsonl").read_bytes()
    assert (one / "rounded.summary.md").read_bytes() == (two / "rounded.summary.md").read_bytes()
    timing = json.loads((one / "rounded.timing.json").read_text(encoding="utf-8"))
    assert set(timing) == {"started", "seconds", "checks"} and timing["seconds"] >= 0
    assert "started" not in (one / "rounded.jsonl").read_text(encoding="utf-8")


def test_a_sweep_case_keeps_every_element_of_its_none_results(tmp_path, capsys):
    cases = tmp_path / "sweep.yaml"
    cases.write_text(SWEEP, encoding="utf-8")
    main(["run", "--framework", "rounded", "--cases", str(cases), "--out", str(tmp_path), "--name", "swept"])
    run = read_run(tmp_path / "swept.jsonl")
    none = [r for r in run.results if r.quantity == "value" and r.reduction == "none"]
    assert len(none) == 2  # the stable formula and the hand two-step path
    for result in none:
        elements = result.elements
        assert elements["x"] == [-40.0, -1.0, 0.0, 1.0, 20.0, 40.0] and elements["target"] == [0.0] * 6
        assert len(elements["got"]) == len(elements["want"]) == len(elements["ulp"]) == 6
        assert elements["want"][2] == float(np.float32(np.log(2)))  # softplus(0), correctly rounded
    hand = next(r for r in none if r.api.startswith("rounded.hand_sigmoid"))
    assert hand.elements["got"][-1] == float("inf") and hand.elements["ulp"][-1] == float("inf")  # log(1 - 1)
    assert all(r.elements is None for r in run.results if r.reduction != "none")
    for record in lines(tmp_path / "swept.jsonl"):
        assert not list(validator().iter_errors(record))


def test_reading_back_leaves_out_a_line_cut_short_and_rejects_another_version(tmp_path):
    path = tmp_path / "x.jsonl"
    writer = ResultWriter(path, {"framework": "f", "framework_versions": {"f": "1.0"}}, 2)
    writer.write(Result("a/b", "f", "api", "bce", "float32", "none", "exact", max_ulp=float("inf")))
    writer.close()
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"case": "a/c", "framework": "f", "ap')  # killed mid-line
    run = read_run(path)
    assert [r.case for r in run.results] == ["a/b"] and run.truncated == 1
    assert run.results[0].max_ulp == float("inf") and run.label == "f 1.0"
    # read leniently, the file is still said to be incomplete; read strictly, it is an error
    assert run.problems == [
        f"{path}:3: cut short: the last line ends mid-record, without its newline ('{{\"case\": \"a/c\", \"framework\": \"f\", \"ap')",
        f"{path}:1: 1 result records, 2 planned in the header: 1 missing (the run stopped early, or the file was cut short)",
    ]
    with pytest.raises(ResultsError, match="not a whole, valid results file"):
        read_run(path, strict=True)
    path.write_text('{"format": "bce-conformance-results", "format_version": 99, "environment": {}}\n', encoding="utf-8")
    with pytest.raises(ResultsError, match="version 99"):
        read_run(path)


def test_write_atomically_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    path = write_atomically(tmp_path / "report.md", "old")
    write_atomically(path, "new")
    assert path.read_text(encoding="utf-8") == "new" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_the_subnormal_probe_sees_a_framework_that_flushes():
    numpy = load_framework("rounded")
    assert subnormal_probe(numpy)["float64"] == {"flushed_to_zero": False, "inputs_as_zero": False}

    def flushing(values, factor):  # what XLA's CPU backend does (jax#37762)
        tiny = np.finfo(values.dtype).smallest_normal
        kept = np.where(np.abs(values) < tiny, 0, values) * values.dtype.type(factor)
        return np.where(np.abs(kept) < tiny, 0, kept)

    flushed = describe(type(numpy)(name="x", versions={"x": "1"}, apis=numpy.apis, multiply=flushing))
    assert flushed["subnormals"]["float32"] == {"flushed_to_zero": True, "inputs_as_zero": True}
    assert "float32 results flushed to zero and inputs read as zero" in header(flushed)
    silent = describe(type(numpy)(name="x", versions={"x": "1"}, apis=numpy.apis))
    assert silent["subnormals"] == {"probe": "none: the adapter gives no multiply"}


def test_a_large_sweep_keeps_the_first_and_the_worst_element_of_each_bin(tmp_path, capsys):
    cases = tmp_path / "big.yaml"
    cases.write_text(
        "schema_version: 1\ndescription: a large sweep\ncases:\n"
        "  - id: all\n    why: every float16 logit\n    sweep: true\n    gradients: false\n"
        "    logits: {all_finite: float16}\n    target: [0, 1]\n    product: true\n"
        "    dtypes: [float16]\n    reductions: [none]\n    ops: [sigmoid_bce]\n",
        encoding="utf-8",
    )
    main(["run", "--framework", "rounded", "--cases", str(cases), "--out", str(tmp_path)])
    run = read_run(tmp_path / "rounded.jsonl")
    (result,) = [r for r in run.results if r.quantity == "value"]
    elements = result.elements
    assert elements["sampled_from"] == 63488 * 2
    assert 2048 <= len(elements["x"]) <= 4096 + 4
    # the worst element of the whole sweep is among those kept, and each target's extremes
    assert max(elements["ulp"]) == result.max_ulp
    for target in (0.0, 1.0):
        xs = [x for x, t in zip(elements["x"], elements["target"]) if t == target]
        assert min(xs) == -65504.0 and max(xs) == 65504.0
    for record in lines(tmp_path / "rounded.jsonl"):
        assert not list(validator().iter_errors(record))
