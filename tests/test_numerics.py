"""The numerics environment: its record, a known divergence's `when:`, and the diff that compares like with like.

Nothing here asserts what this host's kernels compute: records and results are planted, or read back
from the probe itself (numpy's dispatch is switched with NPY_DISABLE_CPU_FEATURES in a subprocess).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from types import SimpleNamespace

import jsonschema
import pytest

from conformance import numerics
from conformance import runner as runner_module
from conformance.cases import CaseError
from conformance.cli import main
from conformance.diff import compare, markdown
from conformance.divergences import _parse as parse_divergences
from conformance.results import Result, ResultWriter, read_runs

X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw pni\n\nprocessor\t: 1\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimdhp sve bf16 crc32\nCPU implementer\t: 0x41\n"
AVX512 = {"numpy.simd_found": ["X86_V3", "X86_V4"], "numpy.simd_not_found": ["AVX512_SPR"], "cpu.flags": ["avx2", "avx512f"]}
AVX2 = {"numpy.simd_found": ["X86_V3"], "numpy.simd_not_found": ["X86_V4", "AVX512_SPR"], "cpu.flags": ["avx2"]}
WHEN = {"numpy.simd_found": {"has": "X86_V4"}}


# ---------------------------------------------------------------------------------------------
# the record


def test_cpu_flags_keep_those_that_select_kernels_on_x86_and_arm():
    assert numerics._cpu_flags(X86) == ["avx", "avx2", "avx512bw", "avx512f", "fma", "sse4_2"]
    assert numerics._cpu_flags(ARM) == ["asimd", "asimdhp", "bf16", "sve"]
    assert numerics._cpu_flags("model name : something\n") == []


def probe_in_subprocess(**environ) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPY_")} | environ
    code = "import json; from conformance import numerics; print(json.dumps(numerics.probe()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_numpys_dispatch_as_the_record_has_it_follows_npy_disable_cpu_features():
    default = probe_in_subprocess()
    found = default["numpy.simd_found"]
    if not found:
        pytest.skip("numpy dispatches nothing beyond its baseline on this host: nothing to switch off")
    # the newest target found (on an AVX-512 host X86_V4 or AVX512_ICL, on AVX2 X86_V3, on arm ASIMD...)
    off = found[-1]
    switched = probe_in_subprocess(NPY_DISABLE_CPU_FEATURES=off)
    assert off not in switched["numpy.simd_found"] and off in switched["numpy.simd_not_found"]
    assert switched["env.NPY_DISABLE_CPU_FEATURES"] == off and "env.NPY_DISABLE_CPU_FEATURES" not in default
    assert switched["numpy.simd_baseline"] == default["numpy.simd_baseline"]
    assert numerics.changes(default, switched)[0] == f"$NPY_DISABLE_CPU_FEATURES: (not recorded) → {off}"


def test_framework_probes_run_only_for_imported_frameworks_and_a_failing_one_says_so(monkeypatch):
    fake = SimpleNamespace(
        backends=SimpleNamespace(
            cpu=SimpleNamespace(get_cpu_capability=lambda: "AVX2"), mkldnn=SimpleNamespace(is_available=lambda: True, enabled=True)
        ),
        get_num_threads=lambda: 3,
        get_num_interop_threads=lambda: 1,
    )
    record = numerics.probe(modules={"torch": fake}, environ={"ATEN_CPU_CAPABILITY": "avx2"})
    assert record["torch.cpu_capability"] == "AVX2" and record["torch.threads"] == 3 and record["torch.mkldnn"] is True
    assert record["env.ATEN_CPU_CAPABILITY"] == "avx2" and not any(k.startswith(("jax.", "tensorflow.")) for k in record)
    assert list(record) == sorted(record)
    broken = numerics.probe(modules={"jax": SimpleNamespace()}, environ={})
    assert broken["jax.probe"].startswith("raised AttributeError")
    assert not any(k.startswith("torch.") for k in numerics.probe(modules={}, environ={}))


def test_changes_name_each_field_and_a_side_without_a_record():
    assert numerics.changes(AVX2, AVX2) == []
    assert numerics.changes(AVX2, AVX512) == [
        "CPU flags: avx2 → avx2, avx512f",
        "numpy SIMD dispatch found: X86_V3 → X86_V3, X86_V4",
        "numpy SIMD dispatch not found: X86_V4, AVX512_SPR → AVX512_SPR",
    ]
    assert numerics.changes(None, AVX2) == ["numerics environment not recorded in the baseline"]
    assert numerics.changes(None, None) == []


# ---------------------------------------------------------------------------------------------
# conditions


def test_conditions_hold_term_by_term_and_never_on_an_unrecorded_field():
    condition = numerics.parse_condition(WHEN)
    assert numerics.holds(condition, AVX512) and not numerics.holds(condition, AVX2)
    assert not numerics.holds(condition, {}) and not numerics.holds(condition, None)
    lacks = numerics.parse_condition({"numpy.simd_found": {"lacks": "X86_V4"}, "torch.cpu_capability": {"is_not": "AVX512"}})
    assert not numerics.holds(lacks, AVX2)  # no torch field recorded: that term cannot hold
    assert numerics.holds(lacks, AVX2 | {"torch.cpu_capability": "AVX2"})
    assert numerics.describe_condition(condition) == "numpy SIMD dispatch found has X86_V4"
    assert numerics.holds(numerics.parse_condition({"torch.threads": {"is": 2}}), {"torch.threads": 2})


@pytest.mark.parametrize(
    "when, field, message",
    [
        ("X86_V4", "when", "a non-empty mapping"),
        ({}, "when", "a non-empty mapping"),
        ({"numpy.simd_fund": {"has": "X86_V4"}}, "when.numpy.simd_fund", "unknown numerics field 'numpy.simd_fund'"),
        ({"numpy.simd_found": "X86_V4"}, "when.numpy.simd_found", "one {operator: value}"),
        ({"numpy.simd_found": {"contains": "X86_V4"}}, "when.numpy.simd_found", "unknown operator 'contains'"),
        ({"torch.threads": {"is": 2.5}}, "when.torch.threads.is", "a string, a whole number or a boolean"),
    ],
)
def test_a_malformed_condition_names_its_field(when, field, message):
    with pytest.raises(numerics.ConditionError, match=message) as caught:
        numerics.parse_condition(when)
    assert caught.value.field == field


def test_a_known_divergence_file_with_a_bad_when_names_the_file_the_entry_and_the_field():
    text = "- id: simd\n  api: a\n  where: {quantity: value}\n  reason: r\n  source: s\n  when: {numpy.simd_found: {contains: X86_V4}}\n"
    with pytest.raises(CaseError) as caught:
        parse_divergences(text, "mine.yaml")
    assert str(caught.value) == (
        "mine.yaml:6: entry 'simd' field 'when.numpy.simd_found': unknown operator 'contains' (one of: has, lacks, is, is_not)"
    )
    (entry,) = parse_divergences(text.replace("contains", "has"), "mine.yaml")
    assert entry.applies(AVX512) and not entry.applies(AVX2) and entry.when_record == WHEN


# ---------------------------------------------------------------------------------------------
# a run: an entry applies where its condition holds, and its result records the condition

PROBE_CASE = """\
schema_version: 1
description: the hand formula's symmetry, which the rounded subject misses by construction
defaults: {gradients: false}
cases:
  - id: blog-row
    why: the hand sigmoid(17) rounds to 1 in float32 (the correctly rounded one does not), so L(17, 0) is inf; L(-17, 1) is not
    logits: [17.0]
    target: [0]
    dtypes: [float32]
    reductions: [none]
    ops: [sigmoid_bce]
"""
ENTRY = """\
- id: symmetry-on-avx512
  api: rounded.hand_sigmoid+rounded.hand_bce
  where: {case: probe/blog-row, quantity: [value, symmetry]}
  when: {numpy.simd_found: {has: X86_V4}}
  reason: planted
  source: https://example.invalid/when
"""


@pytest.fixture
def probe_files(tmp_path):
    cases = tmp_path / "probe.yaml"
    cases.write_text(PROBE_CASE, encoding="utf-8")
    entries = tmp_path / "when.yaml"
    entries.write_text(ENTRY, encoding="utf-8")
    return cases, entries


@pytest.mark.parametrize("host", ["avx512", "avx2"])
def test_an_entry_with_when_applies_only_where_it_holds(monkeypatch, probe_files, tmp_path, capsys, host):
    monkeypatch.setattr(runner_module.numerics, "probe", lambda: AVX512 if host == "avx512" else AVX2)
    cases, entries = probe_files
    out = tmp_path / "out"
    status = main(["run", "--framework", "rounded", "--cases", str(cases), "--out", str(out), "--divergences", str(entries)])
    printed = capsys.readouterr().out
    (symmetry,) = [r for r in read_runs([out])[0].results if r.quantity == "symmetry"]
    if host == "avx512":
        assert status == 0 and symmetry.verdict == "known_divergence" and symmetry.divergence == "symmetry-on-avx512"
        assert symmetry.when == WHEN
        assert "hold elsewhere" not in printed.splitlines()[0]
    else:  # not applied, not stale: the same result fails, and the header says which entry held elsewhere
        assert status == 1 and symmetry.verdict == "fail" and symmetry.divergence == "" and symmetry.when == {}
        assert "known divergence 'symmetry-on-avx512'" not in printed  # no staleness failure
        assert "1 more that hold elsewhere, not applied: symmetry-on-avx512 when numpy SIMD dispatch found has X86_V4" in printed
    lines = [json.loads(line) for line in (out / "rounded.jsonl").read_text().splitlines()]
    record = next(r for r in lines if r.get("quantity") == "symmetry")
    assert ("when" in record) == (host == "avx512")  # written only where a condition applied
    assert lines[0]["environment"]["numerics"] == (AVX512 if host == "avx512" else AVX2)
    schema = json.loads(resources.files("conformance").joinpath("schema/results.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    assert all(not list(validator.iter_errors(r)) for r in lines)


# ---------------------------------------------------------------------------------------------
# the diff


def write(path, results, numerics_record):
    environment = {"framework": "numpy", "framework_versions": {"numpy": "2.4.6"}}
    if numerics_record is not None:
        environment["numerics"] = numerics_record
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = ResultWriter(path, environment, len(results))
    for result in results:
        writer.write(result)
    writer.close()


def result(case, verdict="exact", max_ulp=0.0, **fields) -> Result:
    return Result(case=case, framework="numpy", api="numpy.hand", op="bce", dtype="float64", reduction="none",
                  verdict=verdict, max_ulp=max_ulp, **fields)  # fmt: skip


def diff(tmp_path, before, after, numerics_before, numerics_after):
    write(tmp_path / "base" / "numpy.jsonl", before, numerics_before)
    write(tmp_path / "cur" / "numpy.jsonl", after, numerics_after)
    return compare(read_runs([str(tmp_path / "base")]), read_runs([str(tmp_path / "cur")]))


BEFORE = [result("c/symmetry", max_ulp=4.0), result("c/ulps", max_ulp=0.9), result("c/steady", max_ulp=0.5)]
ON_AVX512 = [
    result("c/symmetry", "known_divergence", 5.0, divergence="symmetry-on-avx512", when=WHEN),
    result("c/ulps", max_ulp=1.99),
    result("c/steady", max_ulp=0.5),
]


def test_a_changed_environment_is_named_first_and_its_expected_changes_are_no_regressions(tmp_path):
    changes = diff(tmp_path, BEFORE, ON_AVX512, AVX2, AVX512)
    assert not changes.regressions
    assert [c.id for c in changes.environment] == [ON_AVX512[0].id, ON_AVX512[1].id]
    assert changes.numerics == {"numpy": numerics.changes(AVX2, AVX512)}
    text = markdown(changes)
    heading = text.index("### Numerics environment changed: numpy")
    assert text.index("- numpy SIMD dispatch found: X86_V3 → X86_V3, X86_V4") > heading
    listed = text.index(f"- `{ON_AVX512[0].id}` (numpy): exact → known_divergence, max ULP 4 → 5")
    assert listed > heading and text.index("#### numpy: Expected with the numerics environment (no regressions) (2)") < listed
    assert "known divergence symmetry-on-avx512 (when numpy SIMD dispatch found has X86_V4)" in text
    assert text.rstrip().endswith("no regressions") and "numerics environment changed in numpy" in text
    # and back: the entry no longer applies, the result is exact again (an improvement), the ULPs shrink
    back = diff(tmp_path / "back", ON_AVX512, BEFORE, AVX512, AVX2)
    assert not back.regressions and [c.id for c in back.improvements] == [BEFORE[0].id, BEFORE[1].id]


def test_the_same_changes_on_an_unchanged_environment_are_regressions(tmp_path):
    changes = diff(tmp_path, BEFORE, ON_AVX512, AVX512, AVX512)
    assert [c.id for c in changes.worse] == [ON_AVX512[0].id] and [c.id for c in changes.ulp_growth] == [ON_AVX512[1].id]
    assert not changes.environment and not changes.numerics and "Numerics environment" not in markdown(changes)


def test_a_when_that_already_held_on_the_baseline_excuses_nothing(tmp_path):
    # the environment changed, but not in what the entry names: its condition held before too
    moved = AVX512 | {"cpu.flags": ["avx2", "avx512f", "avx512bw"]}
    changes = diff(tmp_path, BEFORE, ON_AVX512, AVX512, moved)
    assert [c.id for c in changes.worse] == [ON_AVX512[0].id] and [c.id for c in changes.environment] == [ON_AVX512[1].id]


def test_a_new_failure_on_a_new_host_is_still_a_regression_listed_under_its_heading(tmp_path, capsys):
    failing = [result("c/symmetry", "fail", 5.0, message="relation symmetry does not hold"), *ON_AVX512[1:]]
    changes = diff(tmp_path, BEFORE, failing, AVX2, AVX512)
    assert [c.id for c in changes.new_failures] == [failing[0].id]
    text = markdown(changes)
    assert text.index("#### numpy: New failures (1)") > text.index("### Numerics environment changed: numpy")
    assert "\n### New failures" not in text  # listed once, under the run's heading
    assert main(["diff", str(tmp_path / "base"), str(tmp_path / "cur")]) == 1


def test_a_baseline_without_a_numerics_record_is_said_and_excuses_nothing(tmp_path):
    changes = diff(tmp_path, BEFORE, ON_AVX512, None, AVX512)
    assert changes.numerics == {"numpy": ["numerics environment not recorded in the baseline"]}
    assert [c.id for c in changes.worse] == [ON_AVX512[0].id] and [c.id for c in changes.ulp_growth] == [ON_AVX512[1].id]


def test_the_avx512_targets_are_what_a_second_dispatch_switches_off(capsys):
    assert numerics.avx512_found(AVX512) == ["X86_V4"] and numerics.avx512_found(AVX2) == []
    assert numerics.avx512_found({"numpy.simd_found": ["X86_V3", "X86_V4", "AVX512_ICL"]}) == ["X86_V4", "AVX512_ICL"]
    assert numerics.avx512_found({}) == []
    assert numerics.main(["--avx512"]) == 0
    assert capsys.readouterr().out.split() == numerics.avx512_found(numerics.probe())
    assert numerics.main([]) == 0 and "numpy SIMD dispatch found" in capsys.readouterr().out
    assert numerics.main(["--nonsense"]) == 2


def test_the_report_shows_each_runs_numerics_or_says_it_was_not_recorded(tmp_path):
    from conformance.report import environment_rows

    write(tmp_path / "with.jsonl", [result("c/a")], AVX512)
    write(tmp_path / "without.jsonl", [result("c/a")], None)
    runs = {run.path.stem: dict(environment_rows(run)) for run in read_runs([str(tmp_path)])}
    with_record, without_record = runs["with"], runs["without"]
    assert with_record["numerics"] == numerics.summary(AVX512) and "numpy SIMD dispatch found X86_V3, X86_V4" in with_record["numerics"]
    assert without_record["numerics"].startswith("not recorded")


VERSIONED = "- id: old\n  api: a\n  where: {quantity: value}\n  reason: r\n  source: s\n"


def test_an_entry_with_versions_holds_only_for_the_framework_versions_it_names():
    (entry,) = parse_divergences(VERSIONED + "  versions: jax <0.7\n", "mine.yaml")
    assert entry.applies(None, {"jax": "0.6.2", "jaxlib": "0.6.2"}) and not entry.applies(None, {"jax": "0.10.2"})
    assert not entry.applies(None, {"torch": "2.13.0"}) and not entry.applies(None, None)  # jax not recorded: no
    (both,) = parse_divergences(VERSIONED + "  versions: [jax >=0.6, jaxlib ==0.6.2]\n", "mine.yaml")
    assert both.applies(None, {"jax": "0.6.2", "jaxlib": "0.6.2"}) and not both.applies(None, {"jax": "0.6.2", "jaxlib": "0.7.0"})
    assert both.describe_scope() == "for jax>=0.6 and for jaxlib==0.6.2"
    (plain,) = parse_divergences(VERSIONED, "mine.yaml")
    assert plain.applies(None, None) and plain.versions == ()


@pytest.mark.parametrize("versions", ["jax", "'jax[cuda] <0.7'", "'jax <0.7; python_version > \"3\"'", "'<0.7'", "[]", "7"])
def test_a_malformed_versions_names_the_file_the_entry_and_the_field(versions):
    with pytest.raises(CaseError) as caught:
        parse_divergences(VERSIONED + f"  versions: {versions}\n", "mine.yaml")
    assert str(caught.value).startswith("mine.yaml:6: entry 'old' field 'versions': versions")


def test_exact_to_conditioned_is_expected_with_a_changed_environment_and_a_regression_on_the_same_one(tmp_path):
    """The host's kernels may spend the slack the conditioning allows: exact → conditioned on a new host is the
    environment's; on the same host it got worse."""
    before = [result("c/grad", "exact", 2.0)]
    after = [result("c/grad", "conditioned", 9.0, bound_ratio=1.5, condition=40.0)]
    changes = diff(tmp_path, before, after, AVX2, AVX512)
    assert not changes.regressions and [c.id for c in changes.environment] == [after[0].id]
    same = diff(tmp_path / "same", before, after, AVX512, AVX512)
    assert [c.id for c in same.worse] == [after[0].id]
    failing = [result("c/grad", "fail", 90.0, bound_ratio=15.0)]  # past the conditioning: a regression anywhere
    assert [c.id for c in diff(tmp_path / "fail", before, failing, AVX2, AVX512).new_failures] == [failing[0].id]
