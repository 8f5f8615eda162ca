"""The diff gate fails closed: no damaged, forged, cut-off or missing results file, on either side, and no
threshold that is not a number of ULPs, can turn a run green (``python -m conformance diff`` exits 2 and
names the file and line). The strict reader behind it (``conformance.results.read_run(path, strict=True)``),
and the two commands that share it: ``baseline`` refuses an incomplete run, ``summary`` warns of one."""

from __future__ import annotations

import copy
import json
import os
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from conformance.cli import main
from conformance.diff import DiffError, compare
from conformance.results import Result, ResultsError, ResultWriter, _validators, read_run, read_runs

JAX = {"framework": "jax", "framework_versions": {"jax": "0.10.2"}}
TORCH = {"framework": "torch", "framework_versions": {"torch": "2.13.0"}}
N = 60


def result(i: int, verdict="exact", max_ulp=0.0, framework="jax", **fields) -> Result:
    return Result(f"c/r{i:03d}", framework, f"{framework}.bce", "bce", "float32", "mean", verdict, max_ulp=max_ulp, **fields)


def write(path: Path, results: list[Result], environment=JAX, planned: int | None = None) -> Path:
    writer = ResultWriter(path, environment, len(results) if planned is None else planned)
    for r in results:
        writer.write(r)
    writer.close()
    return path


@pytest.fixture
def sets(tmp_path):
    """A baseline and a current folder of one whole run each, N results, identical: the diff is clean."""
    base, cur = tmp_path / "base", tmp_path / "cur"
    write(base / "jax.jsonl", [result(i) for i in range(N)])
    write(cur / "jax.jsonl", [result(i) for i in range(N)])
    return base, cur


def diff(capsys, *args) -> tuple[int, str, str]:
    code = main(["diff", *map(str, args)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]  # every line ends with a newline


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_whole_runs_are_clean(sets, capsys):
    code, out, err = diff(capsys, *sets)
    assert code == 0 and out.rstrip().endswith("no regressions") and err == ""


# ---- each fault, on the baseline and on the current side: exit 2, the file and line named


@pytest.mark.parametrize("side", ["base", "cur"])
def test_an_empty_file(sets, capsys, side):
    path = sets[side == "cur"] / "jax.jsonl"
    path.write_bytes(b"")
    code, out, err = diff(capsys, *sets)
    assert code == 2 and out == ""
    assert f"error: {'baseline' if side == 'base' else 'current'} {path.parent}: the diff compares whole, valid results files only" in err
    assert f"{path}: empty (0 bytes): no header, no results" in err


def test_every_line_corrupt(sets, capsys):
    path = sets[0] / "jax.jsonl"
    write_lines(path, [b"\x00garbage " + bytes([65 + i % 26]) for i in range(N + 1)])
    code, _, err = diff(capsys, *sets)
    assert code == 2
    assert f"{path}:1: no header: line 1 is not one" in err
    assert f"{path}:2: not a JSON record (JSONDecodeError" in err
    assert f"({N + 2} problems)" in err and f"... and {N + 2 - 20} more" in err  # listed up to 20, counted whole


def test_a_file_cut_in_half_at_a_line_boundary_is_caught_by_planned(sets, capsys):
    # every line left is whole: only the header's count shows the baseline lost its second half, whose
    # results got worse in the current run (read leniently, they were "new results": a clean diff)
    base, cur = sets[0] / "jax.jsonl", sets[1] / "jax.jsonl"
    write(cur, [result(i) if i < N // 2 else result(i, "acceptable", 3.0, variant="clamp") for i in range(N)])
    write_lines(base, lines_of(base)[: 1 + N // 2])
    assert compare(read_runs([sets[0]]), read_runs([sets[1]])).regressions == []
    code, out, err = diff(capsys, *sets)
    assert code == 2 and out == ""
    assert f"{base}:1: {N // 2} result records, {N} planned in the header: {N // 2} missing" in err


def test_a_file_cut_mid_line(sets, capsys):
    cur = sets[1] / "jax.jsonl"
    data = cur.read_bytes()
    cur.write_bytes(data[: len(data) - 40])  # inside the last record
    code, _, err = diff(capsys, *sets)
    assert code == 2
    assert f"{cur}:{N + 1}: cut short: the last line ends mid-record, without its newline" in err
    assert f"{cur}:1: {N - 1} result records, {N} planned in the header: 1 missing" in err


def test_a_file_cut_just_before_its_last_newline(sets, capsys):
    cur = sets[1] / "jax.jsonl"
    cur.write_bytes(cur.read_bytes()[:-1])  # every record is whole JSON, but the writer's last newline is gone
    code, _, err = diff(capsys, *sets)
    assert code == 2 and f"{cur}:{N + 1}: cut short: the last line has no newline" in err


def test_a_duplicate_record(sets, capsys):
    cur = sets[1] / "jax.jsonl"
    lines = lines_of(cur)
    write_lines(cur, lines[:6] + [lines[5]] + lines[6:])  # one record twice: more than planned
    code, _, err = diff(capsys, *sets)
    assert code == 2
    assert f"{cur}:7: result {result(4).id} recorded again (line 6, then line 7): each check has one record" in err
    assert f"{cur}:1: {N + 1} result records, more than the {N} planned in the header" in err


def test_a_duplicate_in_place_of_another_record(sets, capsys):
    # the count is right: only the duplicate check sees that result 5 is missing (its failure hidden)
    cur = sets[1] / "jax.jsonl"
    lines = lines_of(cur)
    lines[6] = lines[5]
    write_lines(cur, lines)
    code, _, err = diff(capsys, *sets)
    assert code == 2
    assert f"{cur}:7: result {result(4).id} recorded again (line 6, then line 7)" in err
    assert "planned in the header" not in err


@pytest.mark.parametrize(
    "header, message",
    [
        ({"format": "bce-conformance-results", "format_version": 99, "planned": N, "environment": JAX},
         "results format 'bce-conformance-results' version 99; this is bce-conformance reading version 3"),
        ({"format": "other-results", "format_version": 3, "planned": N, "environment": JAX},
         "results format 'other-results' version 3: not a 'bce-conformance-results' file"),
        ({"format": "bce-conformance-results", "format_version": "3", "planned": N, "environment": JAX},
         "results format 'bce-conformance-results' version '3'; this is bce-conformance reading version 3"),
    ],
)
def test_an_unknown_format_or_version(sets, capsys, header, message):
    base = sets[0] / "jax.jsonl"
    write_lines(base, [json.dumps(header).encode()] + lines_of(base)[1:])
    code, _, err = diff(capsys, *sets)
    assert code == 2 and f"{base}:1: {message}" in err


def test_a_version_2_file_says_to_regenerate_it(sets, capsys):
    base = sets[0] / "jax.jsonl"
    header = {"format": "bce-conformance-results", "format_version": 2, "environment": JAX}  # v2: no `planned`
    write_lines(base, [json.dumps(header).encode()] + lines_of(base)[1:])
    code, _, err = diff(capsys, *sets)
    assert code == 2
    assert f"{base}:1: results format version 2, written by an older bce-conformance; this one reads version 3 only" in err
    assert "regenerate it with this version (python -m conformance run" in err
    assert "python -m conformance baseline" in err


def test_fifty_regressions_behind_one_damaged_baseline_line(sets, capsys):
    base, cur = sets[0] / "jax.jsonl", sets[1] / "jax.jsonl"
    # the current run: 50 results got worse (exact -> acceptable, 30 ULP)
    write(cur, [result(i, "acceptable", 30.0, variant="clamp") if i < 50 else result(i) for i in range(N)])
    lines = lines_of(base)
    write_lines(base, [lines[0], b"".join(lines[1:51])] + lines[51:])  # their 50 baseline records: one line, newlines lost
    # what the lenient reader made of it: the 50 were "new results", no regression at all
    lenient = compare(read_runs([sets[0]]), read_runs([sets[1]]))
    assert lenient.regressions == [] and len(lenient.new_results) == 50
    code, out, err = diff(capsys, *sets)
    assert code == 2 and out == ""
    assert f"{base}:2: not a JSON record (JSONDecodeError: Extra data" in err
    assert f"{base}:1: {N - 50} result records, {N} planned in the header: 50 missing" in err


def test_one_damaged_byte_in_a_record(sets, capsys):
    base = sets[0] / "jax.jsonl"
    lines = lines_of(base)
    lines[10] = lines[10].replace(b'"verdict": "exact"', b'"verdict": "exacT"')
    write_lines(base, lines)
    code, _, err = diff(capsys, *sets)
    assert code == 2 and f"{base}:11: not a valid result record: field verdict: 'exacT' is not one of [" in err


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: {**r, "max_ulp": [1]}, "field max_ulp: [1] is valid under none of the given schemas"),
        (lambda r: {k: v for k, v in r.items() if k != "api"}, "'api' is a required property"),
        (lambda r: {**r, "case": 7}, "field case: 7 is not of type string"),
        (lambda r: {**r, "maxulp": 1}, "additional property 'maxulp' is not allowed"),
        (lambda r: {**r, "elements": {"x": [1], "target": [0], "got": [1], "want": [1], "ulp": [0, -1.0, 0]}},
         "field elements/ulp/1: -1.0 is not an error in ULPs"),
        (lambda r: {**r, "elements": [1, 2]}, "field elements: [1, 2] is not of type object"),
        (lambda r: [r], "not a result record (a JSON list, not an object)"),
    ],
)
def test_a_record_that_is_not_a_valid_result(sets, capsys, edit, message):
    cur = sets[1] / "jax.jsonl"
    lines = lines_of(cur)
    lines[3] = json.dumps(edit(json.loads(lines[3]))).encode()
    write_lines(cur, lines)
    code, _, err = diff(capsys, *sets)
    assert code == 2 and f"{cur}:4: " in err and message in err


def test_a_missing_or_misplaced_header(sets, capsys):
    base, cur = sets[0] / "jax.jsonl", sets[1] / "jax.jsonl"
    write_lines(base, lines_of(base)[1:])
    lines = lines_of(cur)
    write_lines(cur, lines[1:3] + [lines[0]] + lines[3:])
    code, _, err = diff(capsys, *sets)
    assert code == 2
    assert f"{base}:1: no header: line 1 is not one, and a results file starts" in err
    assert f"{cur}:3: the header, misplaced: it is line 1 of a results file" in err  # both sides named at once
    header = json.loads(lines[0])
    write_lines(cur, [lines[0], json.dumps({**header, "planned": 1}).encode()] + lines[1:])
    with pytest.raises(ResultsError) as raised:
        read_run(cur, strict=True)
    assert raised.value.problems == [f"{cur}:2: a second header (the first is line 1)"]


@pytest.mark.parametrize("planned", [None, -1, True, "60"])
def test_a_header_without_a_valid_planned_count(sets, capsys, planned):
    cur = sets[1] / "jax.jsonl"
    lines = lines_of(cur)
    header = json.loads(lines[0])
    if planned is None:
        del header["planned"]
    else:
        header["planned"] = planned
    write_lines(cur, [json.dumps(header).encode()] + lines[1:])
    code, _, err = diff(capsys, *sets)
    assert code == 2 and f"{cur}:1: the header:" in err


@pytest.mark.parametrize(
    "line, message",
    [
        (b"", "an empty line (every line is one JSON record)"),
        (b'{"case": "c/x", "max_ulp": NaN}', "not a JSON record (ValueError: NaN is not JSON"),
        (b'{"case": "c/\xff"}', "not a JSON record (UnicodeDecodeError"),
    ],
)
def test_a_blank_non_json_or_non_utf8_line(sets, capsys, line, message):
    cur = sets[1] / "jax.jsonl"
    lines = lines_of(cur)
    write_lines(cur, lines[:5] + [line] + lines[5:])
    code, _, err = diff(capsys, *sets)
    assert code == 2 and f"{cur}:6: {message}" in err


@pytest.mark.parametrize("threshold", ["nan", "NaN", "inf", "-inf", "-1", "-0.5"])
def test_a_threshold_that_is_not_a_finite_number_of_ulps(sets, capsys, threshold):
    code, out, err = diff(capsys, *sets, f"--ulp-threshold={threshold}")  # "=": argparse takes -inf for an option
    assert code == 2 and out == ""
    assert f"error: --ulp-threshold {float(threshold)!r}: must be a finite number of ULPs, 0 or more" in err
    with pytest.raises(DiffError, match="must be a finite number"):
        compare(read_runs([sets[0]]), read_runs([sets[1]]), float(threshold))
    assert diff(capsys, *sets, "--ulp-threshold", "0")[0] == 0  # 0 itself is a threshold


@pytest.mark.parametrize("side", [0, 1])
def test_an_empty_folder(sets, capsys, side, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "jax.summary.md").write_text("not a results file")
    args = [empty, sets[1]] if side == 0 else [sets[0], empty]
    code, out, err = diff(capsys, *args)
    assert code == 2 and out == ""
    assert f"error: {'baseline' if side == 0 else 'current'} {empty}: no results files (*.jsonl) in this folder" in err


def test_a_fifo_named_like_a_results_file_does_not_hang(sets, capsys):
    fifo = sets[1] / "torch.jsonl"
    os.mkfifo(fifo)  # nobody writes it: a blocking open would never return
    code, _, err = diff(capsys, *sets)
    assert code == 2 and f"{fifo}: not a regular file" in err


def test_an_absent_run_is_named_and_fails(sets, capsys):
    write(sets[0] / "torch.jsonl", [result(i, framework="torch") for i in range(3)], TORCH)
    code, out, _ = diff(capsys, *sets)
    assert code == 1
    assert "### Runs absent from the current set (1): a regression" in out
    assert "- torch (torch 2.13.0): no results file of this run in the current set (baseline: 3 results: 3 exact)" in out
    assert "diff: 1 regressions (0 new failures, 0 worse, 0 ULP growth, 0 disappeared, 1 runs absent)" in out


def test_an_absent_run_without_results_still_fails(sets, capsys):
    write(sets[0] / "torch.jsonl", [], TORCH)  # planned 0: nothing to be counted as disappeared
    code, out, _ = diff(capsys, *sets)
    assert code == 1 and "- torch (torch 2.13.0): no results file of this run in the current set" in out
    assert "no regressions" not in out and "1 runs absent" in out


def test_a_line_separator_inside_a_message_is_no_line_break(tmp_path):
    # JSON leaves U+2028 and U+0085 unescaped; str.splitlines would cut the record in two there
    path = write(tmp_path / "jax.jsonl", [result(0, "fail", 3.0, message="a\u2028b\x85c\x1cd")])
    (run,) = read_runs([path], strict=True)
    assert run.results[0].message == "a\u2028b\x85c\x1cd"


# ---- the reader: lenient keeps what it can and says what is wrong; strict raises with every problem


def test_the_lenient_reader_keeps_what_it_can_and_lists_the_problems(sets):
    cur = sets[1] / "jax.jsonl"
    lines = lines_of(cur)
    write_lines(cur, lines[:3] + [b"damaged", lines[2]] + lines[3:20])
    run = read_run(cur)
    assert len(run.results) == 20 and run.truncated == 1 and run.planned == N
    assert run.duplicates == {result(1).id: [3, 5]}
    assert run.problems == [
        f"{cur}:4: not a JSON record (JSONDecodeError: Expecting value: line 1 column 1 (char 0)): 'damaged'",
        f"{cur}:5: result {result(1).id} recorded again (line 3, then line 5): each check has one record",
        f"{cur}:1: 20 result records, {N} planned in the header: {N - 20} missing (the run stopped early, or the file was cut short)",
    ]
    with pytest.raises(ResultsError) as raised:
        read_run(cur, strict=True)
    assert raised.value.problems == run.problems
    assert str(raised.value).startswith(f"{cur}: not a whole, valid results file (3 problems):\n  {cur}:4: ")
    assert read_run(sets[0] / "jax.jsonl", strict=True).problems == []


def test_the_schema_checker_agrees_with_jsonschema():
    """``results._validators`` compiles the shipped schema into plain checks (jsonschema takes about a
    millisecond a record); both must accept and reject the same records and headers."""
    schema = json.loads(resources.files("conformance").joinpath("schema/results.schema.json").read_text(encoding="utf-8"))
    header_check, record_check = _validators()
    reference = jsonschema.Draft7Validator(schema)
    record = json.loads(result(1, "known_divergence", 2.5, divergence="d", source="s", when={"cpu.flags": {"has": "avx"}},
                               worst=[{"index": [0], "inputs": {"logits": "0x1p0"}, "got": "0x1p0", "want": "1",
                                       "want_rounded": "0x1p0", "ulp": "inf"}]).to_json())
    header = {"format": "bce-conformance-results", "format_version": 3, "planned": 2,
              "environment": {"framework": "jax", "framework_versions": {"jax": "1"}, "numerics": {"a": ["x"], "b": 1},
                              "subnormals": {"float32": {"flushed_to_zero": True, "inputs_as_zero": False}, "x": "p"}}}
    mutations = [
        lambda r: r, lambda r: r.update(max_ulp=-1), lambda r: r.update(max_ulp="nan"), lambda r: r.update(max_ulp="-inf"),
        lambda r: r.update(max_ulp=True), lambda r: r.update(max_ulp=None), lambda r: r.update(floor_accepted=1.0),
        lambda r: r.update(floor_accepted=1.5), lambda r: r.update(case="a/b/c"), lambda r: r.update(quantity="grad"),
        lambda r: r.update(when={"x": {}}), lambda r: r.update(when={"x": {"a": 1, "b": 2}}),
        lambda r: r["worst"][0].update(index=[-1]), lambda r: r["worst"][0].update(extra=1),
        lambda r: r.update(framework_versions={"a": 1}), lambda r: r.pop("verdict"),
        lambda r: r.update(elements={"x": [1.0], "target": [0], "got": ["inf"], "want": [2], "ulp": [None]}),
        lambda r: r.update(elements={"x": [1.0], "target": [0], "got": ["inf"], "want": [2], "ulp": [None], "more": []}),
        lambda r: r.update(elements={"x": [1.0], "target": [0], "got": ["inf"], "want": [2], "ulp": [0], "sampled_from": 0}),
    ]
    header_mutations = [
        lambda h: h, lambda h: h.update(planned=-1), lambda h: h.update(planned=True), lambda h: h.update(planned=2.0),
        lambda h: h.pop("planned"), lambda h: h.update(format_version=3.0), lambda h: h["environment"].update(x=1),
        lambda h: h["environment"]["subnormals"].update(y={"probe": 1}), lambda h: h["environment"]["numerics"].update(c=1.5),
        lambda h: h.update(environment=[]),
    ]
    for mutations_, base, check in ((mutations, record, record_check), (header_mutations, header, header_check)):
        for mutate in mutations_:
            value = copy.deepcopy(base)
            mutate(value)
            assert (check(value) is None) == reference.is_valid(value), value


# ---- baseline refuses, summary warns


def test_baseline_refuses_an_incomplete_run_and_changes_nothing(sets, capsys, tmp_path):
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    (baselines / "jax.jsonl").write_bytes(b"the old baseline\n")
    results = tmp_path / "results"
    write(results / "jax.jsonl", [result(i) for i in range(N)])
    write(results / "torch.jsonl", [result(i, framework="torch") for i in range(5)], TORCH, planned=9)  # cut short
    assert main(["baseline", str(results), str(baselines)]) == 2
    err = capsys.readouterr().err
    assert f"{results / 'torch.jsonl'}:1: 5 result records, 9 planned in the header: 4 missing" in err
    assert "rerun it before making it a baseline; no baseline was changed" in err
    assert (baselines / "jax.jsonl").read_bytes() == b"the old baseline\n" and not (baselines / "torch.jsonl").exists()
    write(results / "torch.jsonl", [result(i, framework="torch") for i in range(5)], TORCH)
    assert main(["baseline", str(results), str(baselines)]) == 0
    assert read_run(baselines / "torch.jsonl", strict=True).planned == 5  # the baseline keeps the count


def test_summary_of_an_incomplete_file_warns_and_exits_2(sets, capsys, tmp_path):
    cur = sets[1] / "jax.jsonl"
    write_lines(cur, lines_of(cur)[:11])
    markdown = tmp_path / "summary.md"
    assert main(["summary", str(sets[1]), "--out", str(markdown)]) == 2
    captured = capsys.readouterr()
    assert f"warning: {cur}: incomplete or damaged; summarised as far as it can be read:" in captured.err
    assert f"{cur}:1: 10 result records, {N} planned in the header: {N - 10} missing" in captured.err
    assert "INCOMPLETE: 1 of 1 results files are incomplete or damaged" in captured.out
    assert markdown.read_text(encoding="utf-8").startswith(f"> **Incomplete results**: `{cur}` cannot be read whole")
    assert main(["summary", str(sets[0])]) == 0 and "Incomplete" not in capsys.readouterr().out
