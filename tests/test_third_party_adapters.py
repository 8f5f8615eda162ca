"""Third-party adapters: found by --adapter (a file or a module) or by entry point, through the same
public paths a user takes (``python -m conformance run``, ``pytest --pyargs conformance.suite``).

The example adapter of docs/adapters.md runs here as shipped; broken adapters are refused with an
error naming them; an API that misbehaves is that check's result and the run goes on.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conformance.adapters import (
    ENTRY_POINT_GROUP,
    AdapterError,
    Api,
    Framework,
    FrameworkUnavailable,
    load_adapter,
    load_framework,
)
from conformance.cli import main

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "cases" / "seed.yaml"
WEIGHTS = REPO / "cases" / "weights.yaml"
EXAMPLE = REPO / "examples" / "adapters" / "python_math_adapter.py"
EXAMPLE_SPEC = "examples/adapters/python_math_adapter.py:load"  # as the docs write it, from the repository root
DOCS = REPO / "docs" / "adapters.md"
APIS = {"python_math.bce_with_logits", "python_math.bce"}
# seed: blog-3x3 (logits: bce_with_logits) and blog-hand-computation (probs: bce), float32 and float64, 3 reductions
SEED_VALUE_CHECKS = 2 * 2 * 3
# the relations, per dtype: bce_with_logits on blog-3x3 gets symmetry (binary targets mirror exactly) and
# mean-vs-sum, bce on blog-hand-computation mean-vs-sum (probabilities have no mirror); no sigmoid_bce API,
# so no vs-fused
SEED_RELATIONS = {
    "python_math.bce_with_logits": {("none", "symmetry"), ("mean", "mean-vs-sum")},
    "python_math.bce": {("mean", "mean-vs-sum")},
}
SEED_RELATION_CHECKS = 2 * sum(map(len, SEED_RELATIONS.values()))
SEED_CHECKS = 2 * SEED_VALUE_CHECKS + SEED_RELATION_CHECKS  # each value check, its gradient, and the relations
# the example has no `grad`: its float64 gradient checks are unsupported (float32 ones: the dtype, checked first);
# its float64 values and relations are exact
SEED_EXACT = SEED_VALUE_CHECKS // 2 + SEED_RELATION_CHECKS // 2
RELATIONS = {"symmetry", "mean-vs-sum", "vs-fused"}


def no_gradient(api: str) -> str:
    return f"{api} has no gradient in this adapter"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in (
        "CONFORMANCE_FRAMEWORK",
        "CONFORMANCE_ADAPTER",
        "CONFORMANCE_CASES",
        "CONFORMANCE_OUT",
        "CONFORMANCE_MIN_TESTS",
        "PYTEST_ADDOPTS",
    ):
        monkeypatch.delenv(name, raising=False)


def records(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [record for record in map(json.loads, lines) if "format" not in record]  # the environment line left out


def output(result) -> str:
    return "\n".join(result.outlines + result.errlines)


def write_adapter(folder: Path, body: str, name: str = "my_adapter.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def run_suite(pytester, *args):
    return pytester.runpytest_subprocess("--pyargs", "conformance.suite", "-p", "no:cacheprovider", *args)


# ---------------------------------------------------------------------------------------------
# the example adapter, exactly as documented


def test_the_docs_show_the_example_files_exactly():
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```\n", text, flags=re.DOTALL)
    assert {name for name, _ in blocks} == {"examples/adapters/python_math_adapter.py", "examples/adapters/pyproject.toml"}
    for name, shown in blocks:
        assert shown == (REPO / name).read_text(encoding="utf-8"), f"docs/adapters.md shows another {name}"
    assert "docs/adapters.md" in (REPO / "README.md").read_text(encoding="utf-8")


def test_cli_runs_the_example_adapter_by_its_path(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--adapter", EXAMPLE_SPEC, "--cases", "cases/seed.yaml", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "framework python_math (python " in done.stdout and f"2 APIs, {SEED_CHECKS} checks" in done.stdout
    results = records(out / "python_math.jsonl")
    assert len(results) == SEED_CHECKS
    assert {r["api"] for r in results} == APIS and {r["framework"] for r in results} == {"python_math"}
    quantities = [r["quantity"] for r in results]
    assert quantities.count("grad") == quantities.count("value") == SEED_VALUE_CHECKS
    relations = [(r["api"], r["dtype"], r["reduction"], r["quantity"]) for r in results if r["quantity"] in RELATIONS]
    assert sorted(relations) == sorted(
        (api, dtype, reduction, relation)
        for api, applying in SEED_RELATIONS.items()
        for dtype in ("float32", "float64")
        for reduction, relation in applying
    )
    for r in results:
        if r["dtype"] == "float32":  # the relations too: they call the API in the dtype under test
            assert r["verdict"] == "unsupported", r
            assert r["message"] == f"{r['api']} does not take float32"
        elif r["quantity"] == "grad":
            assert r["verdict"] == "unsupported", r
            assert r["message"] == no_gradient(r["api"])
        else:
            assert r["verdict"] == "exact", r
            assert 0 <= float(r["max_ulp"]) <= 1
            if r["quantity"] == "symmetry":  # two sums of terms that are never negative: the mirror is the same sum
                assert r["max_ulp"] == 0.0
    assert done.stdout.count(f"{no_gradient('python_math.bce')} (3)") == 1
    # float32: 3 values, 3 gradients and the relations (bce: mean-vs-sum; bce_with_logits: + symmetry)
    assert done.stdout.count("python_math.bce does not take float32 (7)") == 1
    assert done.stdout.count("python_math.bce_with_logits does not take float32 (8)") == 1
    assert (out / "python_math.summary.md").read_text(encoding="utf-8").startswith("## python_math (python ")


def test_the_example_declares_pos_weight_unsupported_and_takes_weight(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "--adapter", str(EXAMPLE) + ":load", "--cases", str(WEIGHTS), "--out", str(out)]) == 0
    capsys.readouterr()
    float64 = [r for r in records(out / "python_math.jsonl") if r["dtype"] == "float64"]
    # the pos_weight is the reason for the value, the gradient and mean-vs-sum alike (symmetry does not
    # apply: with a pos_weight, L(-x, 1 - y) is not L(x, y))
    assert {(r["quantity"], r["verdict"]) for r in float64 if "pos-weight" in r["case"]} == {
        ("value", "unsupported"),
        ("grad", "unsupported"),
        ("mean-vs-sum", "unsupported"),
    }
    assert {r["message"] for r in float64 if "pos-weight" in r["case"]} == {
        "python_math.bce_with_logits has no pos_weight argument"
    }
    weighted = [r for r in float64 if "pos-weight" not in r["case"] and r["quantity"] == "value"]
    assert len(weighted) == 9 and {r["verdict"] for r in weighted} == {"exact"}  # 3 cases x 3 reductions
    gradients = [r for r in float64 if "pos-weight" not in r["case"] and r["quantity"] == "grad"]
    assert len(gradients) == 9 and {(r["verdict"], r["message"]) for r in gradients} == {
        ("unsupported", no_gradient("python_math.bce_with_logits")),
        ("unsupported", no_gradient("python_math.bce")),
    }
    # the weights scale the terms: the 2 logits cases stay symmetric, and all 3 means are their sums / n
    relations = [
        (r["case"].removeprefix("weights/"), r["quantity"], r["verdict"])
        for r in float64
        if "pos-weight" not in r["case"] and r["quantity"] in RELATIONS
    ]
    logits_cases = ("weight-per-class", "weight-elementwise")
    all_cases = (*logits_cases, "weighted-probabilities")
    assert sorted(relations) == sorted(
        [(case, "symmetry", "exact") for case in logits_cases] + [(case, "mean-vs-sum", "exact") for case in all_cases]
    )


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_example_reproducer_computes_what_the_call_returns(reduction, weighted):
    framework = load_adapter(f"{EXAMPLE}:load")
    x, y, w = [0.5, -3.0, 40.0], [1.0, 0.25, 0.0], [2.0, 0.5, 1.0]
    for api in framework.apis:
        first, values = ("probs", [0.25, 0.5, 1.0]) if api.op == "bce" else ("logits", x)
        inputs = {first: np.array(values), "target": np.array(y)}
        args = {"input": repr([v.hex() for v in values]), "target": repr([v.hex() for v in y])}
        if weighted:
            inputs["weight"], args["weight"] = np.array(w), repr([v.hex() for v in w])
        printed = []
        exec(api.repro(args, "float64", reduction).replace("print(", "printed.append("), {"printed": printed})
        assert printed == [api.call(inputs, reduction).tolist()]


def test_pytest_runs_the_example_adapter(pytester, tmp_path):
    out = tmp_path / "results"
    result = run_suite(
        pytester, "--adapter", f"{EXAMPLE}:load", "--conformance-cases", str(SEED), "--conformance-out", str(out), "-rs"
    )
    # + the known-divergence test; every float32 check, and every gradient check, is skipped
    result.assert_outcomes(passed=SEED_EXACT + 1, skipped=SEED_CHECKS - SEED_EXACT)
    assert result.ret == 0
    text = output(result)
    assert "unsupported: python_math.bce does not take float32" in text
    assert f"unsupported: {no_gradient('python_math.bce_with_logits')}" in text
    assert {(r["verdict"], r["dtype"], r["quantity"]) for r in records(out / "python_math.jsonl")} == {
        ("exact", "float64", "value"),
        ("exact", "float64", "symmetry"),
        ("exact", "float64", "mean-vs-sum"),
        ("unsupported", "float64", "grad"),
        ("unsupported", "float32", "value"),
        ("unsupported", "float32", "grad"),
        ("unsupported", "float32", "symmetry"),
        ("unsupported", "float32", "mean-vs-sum"),
    }


def test_pytest_takes_the_adapter_from_the_environment_with_xdist(pytester, monkeypatch):
    monkeypatch.setenv("CONFORMANCE_ADAPTER", f"{EXAMPLE}:load")
    result = run_suite(pytester, "-n", "2", "--conformance-cases", str(SEED), "--conformance-min-tests", str(SEED_CHECKS))
    result.assert_outcomes(passed=SEED_EXACT + 1, skipped=SEED_CHECKS - SEED_EXACT)
    assert result.ret == 0 and "2 workers" in output(result)


def test_pytest_framework_and_adapter_together_is_an_error(pytester):
    result = run_suite(pytester, "--framework", "numpy", "--adapter", f"{EXAMPLE}:load", "--conformance-cases", str(SEED))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "choose one" in output(result)


def test_cli_framework_and_adapter_together_is_an_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--framework", "numpy", "--adapter", f"{EXAMPLE}:load", "--cases", str(SEED)])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_module_spec_and_a_dotted_object(tmp_path, monkeypatch):
    assert load_adapter("conformance.adapters.numpy:load").name == "numpy"  # a module on the import path
    write_adapter(
        tmp_path,
        f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("example", {str(EXAMPLE)!r})
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)

        class Factory:
            load = staticmethod(example.load)
        """,
        name="factory_adapter.py",
    )
    assert load_adapter(f"{tmp_path / 'factory_adapter.py'}:Factory.load").name == "python_math"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "factory_adapter", raising=False)
    assert {api.name for api in load_adapter("factory_adapter:Factory.load").apis} == APIS


# ---------------------------------------------------------------------------------------------
# entry points


@pytest.fixture
def installed(monkeypatch):
    """Pretends distributions declare these entry points in the group conformance.adapters; the
    example's folder is put on the import path, as installing its pyproject would."""
    declared: list[importlib.metadata.EntryPoint] = []
    real = importlib.metadata.entry_points

    def entry_points(**params):
        if params.get("group") == ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints(declared)
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    monkeypatch.delitem(sys.modules, "python_math_adapter", raising=False)

    def declare(name: str, value: str) -> None:
        declared.append(importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP))

    yield declare
    sys.modules.pop("python_math_adapter", None)


def test_an_entry_point_is_found_by_name(installed):
    installed("python_math", "python_math_adapter:load")
    framework = load_framework("python_math")
    assert framework.name == "python_math" and {api.name for api in framework.apis} == APIS


def test_cli_runs_an_entry_point_by_framework_name(installed, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CONFORMANCE_ISOLATION", "off")  # the entry point is declared in this process only
    installed("python_math", "python_math_adapter:load")
    out = tmp_path / "results"
    assert main(["run", "--framework", "python_math", "--cases", str(SEED), "--out", str(out)]) == 0
    assert "framework python_math" in capsys.readouterr().out
    assert len(records(out / "python_math.jsonl")) == SEED_CHECKS


def test_an_unknown_name_lists_built_in_and_installed_adapters(installed):
    installed("python_math", "python_math_adapter:load")
    with pytest.raises(FrameworkUnavailable) as info:
        load_framework("mxnet")
    message = str(info.value)
    assert "unknown framework 'mxnet'" in message and "numpy, torch, tensorflow, jax" in message
    assert "'conformance.adapters'): python_math" in message and "--adapter" in message


def test_without_entry_points_the_unknown_name_says_none(installed):
    with pytest.raises(FrameworkUnavailable, match=r"installed adapters \(entry points .*\): none"):
        load_framework("mxnet")


def test_a_built_in_name_comes_before_an_entry_point(installed):
    installed("numpy", "python_math_adapter:load")
    assert load_framework("numpy").apis[0].name.startswith("numpy.")


def test_an_entry_point_must_name_its_framework(installed):
    installed("pymath", "python_math_adapter:load")
    with pytest.raises(AdapterError, match=r"adapter 'pymath' \(entry point pymath = 'python_math_adapter:load'\).*named 'python_math'"):
        load_framework("pymath")


def test_a_broken_entry_point_is_an_error_naming_it(installed):
    installed("ghost", "no_such_adapter_module:load")
    with pytest.raises(AdapterError, match=r"adapter 'ghost' \(entry point ghost = 'no_such_adapter_module:load'\): cannot load"):
        load_framework("ghost")


def test_two_entry_points_with_one_name_are_an_error(installed):
    installed("python_math", "python_math_adapter:load")
    installed("python_math", "other_module:load")
    with pytest.raises(AdapterError, match="2 entry points .* have this name"):
        load_framework("python_math")


# ---------------------------------------------------------------------------------------------
# broken adapters: refused at load, with the adapter named


API_OF = """
import numpy as np
from conformance.adapters import Api, Framework

def api(name="my.api", op="bce_with_logits", **fields):
    fields.setdefault("call", lambda inputs, reduction: np.zeros(()))
    fields.setdefault("repro", lambda args, dtype, reduction: "")
    return Api(name=name, framework="mine", op=op, reduced_by="numpy", **fields)
"""

BROKEN = {
    "import-error": ("import not_an_installed_framework_xyz\n", "load", [
        "importing", "raised ModuleNotFoundError: No module named 'not_an_installed_framework_xyz'", "my_adapter.py:1)",
    ]),
    "syntax-error": ("def load(:\n", "load", ["importing", "raised SyntaxError"]),
    "missing-object": ("def load():\n    pass\n", "lod", ["has no attribute 'lod' (it defines: load)"]),
    "not-callable": ("load = 3\n", "load", ["load is an int, not a zero-argument callable"]),
    "loader-raises": (
        "def load():\n    raise RuntimeError('no device')\n", "load",
        ["load() raised RuntimeError: no device (at", "my_adapter.py:2)"],
    ),
    "loader-needs-arguments": ("def load(device):\n    pass\n", "load", ["load() raised TypeError"]),
    "wrong-return-type": ("def load():\n    return {'name': 'mine'}\n", "load", ["load() returned a dict, not a conformance.adapters.Framework"]),
    "returns-none": ("def load():\n    pass\n", "load", ["load() returned None, not a conformance.adapters.Framework"]),
    "no-apis": (API_OF + "def load():\n    return Framework('mine', {}, [])\n", "load", ["apis is empty"]),
    "invalid-framework": (
        API_OF
        + "def load():\n"
        "    return Framework('', {'mine': 1}, [api(), api(), api(name=''), api(name='x', op='bce_logits'),\n"
        "        api(name='y', dtypes=('float8',)), api(name='z', unsupported={'mask': 'no'}), 'not an api',\n"
        "        api(name='v', variants=('clamp_everything',))])\n",
        "load",
        [
            "the Framework it returned is not valid:",
            "framework name ''",
            "versions must be a dict of str to str",
            "API 'my.api': duplicate name",
            "apis[2]: empty name ''",
            "API 'x': unknown op 'bce_logits' (one of: bce, bce_with_logits, sigmoid_bce)",
            "API 'y': unknown dtype(s) 'float8'",
            "API 'z': unsupported has key 'mask'",
            "apis[6] is a str, not a conformance.adapters.Api",
            "API 'v': unknown variant 'clamp_everything' (known: log_clamp(-100), prob_clip(1e-7); an adapter's own is a conformance.variants.Variant, from variants.log_clamp or variants.prob_clip)",
        ],
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_adapter_is_an_error_naming_it(tmp_path, kind):
    body, attribute, words = BROKEN[kind]
    spec = f"{write_adapter(tmp_path, body)}:{attribute}"
    with pytest.raises(AdapterError) as info:
        load_adapter(spec)
    assert isinstance(info.value, FrameworkUnavailable)  # what the command line and the plugin report
    message = str(info.value)
    assert message.startswith(f"adapter {spec!r}: ")
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "spec, words",
    [
        ("my_adapter.py", ["expected module:object or path/to/file.py:object"]),
        ("nowhere/my_adapter.py:load", ["no such file"]),
        ("no_such_adapter_module_xyz:load", ["no module named 'no_such_adapter_module_xyz'", "PYTHONPATH"]),
        ("conformance.adapters.numpy:load()", ["is not an attribute name"]),
    ],
)
def test_a_bad_spec_is_an_error_naming_it(spec, words):
    with pytest.raises(AdapterError) as info:
        load_adapter(spec)
    assert str(info.value).startswith(f"adapter {spec!r}: ")
    assert all(word in str(info.value) for word in words), str(info.value)


def test_cli_broken_adapter_exits_2_without_a_traceback(tmp_path, capsys):
    spec = f"{write_adapter(tmp_path, BROKEN['loader-raises'][0])}:load"
    out = tmp_path / "results"
    assert main(["run", "--adapter", spec, "--cases", str(SEED), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: adapter {spec!r}: load() raised RuntimeError: no device")
    assert "Traceback" not in err and not out.exists()


def test_pytest_broken_adapter_is_a_usage_error(pytester, tmp_path):
    spec = f"{write_adapter(tmp_path, BROKEN['import-error'][0])}:load"
    result = run_suite(pytester, "--adapter", spec, "--conformance-cases", str(SEED))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = output(result)
    assert f"bce-conformance: adapter {spec!r}: importing" in text and "not_an_installed_framework_xyz" in text
    assert "Traceback" not in text


# ---------------------------------------------------------------------------------------------
# a working adapter whose APIs misbehave: each check gets its verdict, and the run goes on

MISBEHAVING = '''
import numpy as np
from conformance.adapters import Api, Framework

def stable(inputs, reduction):
    x, y = inputs["logits"], inputs["target"]
    loss = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    return {"none": loss, "mean": np.mean(loss), "sum": np.sum(loss)}[reduction]

def mutates(inputs, reduction):
    result = stable(inputs, reduction)
    inputs["logits"][...] = np.nan  # writes into its inputs: no other check may see it
    inputs["target"][...] = 7
    return result

def raises(inputs, reduction):
    raise RuntimeError("kernel exploded")

def repro_raises(args, dtype, reduction):
    raise KeyError("no repro")

BEHAVIOURS = {
    "mutates": mutates,
    "good": stable,
    "raises": raises,
    "wrong_shape": lambda inputs, reduction: np.zeros(5, dtype=inputs["logits"].dtype),
    "wrong_dtype": lambda inputs, reduction: stable(inputs, reduction).astype(np.float16),
    "returns_none": lambda inputs, reduction: None,
    "returns_strings": lambda inputs, reduction: np.full(stable(inputs, reduction).shape, "loss"),
    "wrong_values": lambda inputs, reduction: stable(inputs, reduction) * 2,
}

def load():
    apis = [
        Api(
            name=f"broken.{name}",
            framework="broken",
            op="bce_with_logits",
            call=call,
            reduced_by="numpy",
            repro=repro_raises if name == "wrong_values" else (lambda args, dtype, reduction: f"repro {dtype} {reduction}"),
        )
        for name, call in BEHAVIOURS.items()
    ]
    return Framework(name="broken", versions={"numpy": np.__version__}, apis=apis)
'''


def by_api(results: list[dict], quantity: str = "value") -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for r in results:
        if r["quantity"] == quantity:
            grouped.setdefault(r["api"].removeprefix("broken."), []).append(r)
    return grouped


MISBEHAVING_APIS = 8
MISBEHAVING_PROBLEMS = 6  # every API but "good" and "mutates"
BLOG_CHECKS = 2 * 3  # blog-3x3: 2 dtypes x 3 reductions, per API and quantity
BLOG_RELATIONS = 2 * 2  # blog-3x3, per fused logits API: symmetry and mean-vs-sum, in 2 dtypes
MISBEHAVING_CHECKS = MISBEHAVING_APIS * (BLOG_CHECKS * 2 + BLOG_RELATIONS)  # value, gradient, relations
# the relations each API gets, as (relation, verdict): those that call it once per side see what its calls do
MISBEHAVING_RELATIONS = {
    "good": {("symmetry", "exact"), ("mean-vs-sum", "exact")},
    "mutates": {("symmetry", "exact"), ("mean-vs-sum", "exact")},  # the second call gets fresh inputs too
    "raises": {("symmetry", "error"), ("mean-vs-sum", "error")},
    "wrong_shape": {("symmetry", "error"), ("mean-vs-sum", "error")},
    # the relations do not judge the dtype (the value checks do), but a float16 mean is far from the
    # float32 or float64 bound around sum / n
    "wrong_dtype": {("symmetry", "exact"), ("mean-vs-sum", "fail")},
    "returns_none": {("symmetry", "error"), ("mean-vs-sum", "error")},
    "returns_strings": {("symmetry", "error"), ("mean-vs-sum", "error")},
    "wrong_values": {("symmetry", "exact"), ("mean-vs-sum", "exact")},  # twice the loss keeps both relations
}
MISBEHAVING_RELATION_PROBLEMS = 2 * sum(v != "exact" for pairs in MISBEHAVING_RELATIONS.values() for _, v in pairs)
MISBEHAVING_RELATION_PASSES = 2 * sum(v == "exact" for pairs in MISBEHAVING_RELATIONS.values() for _, v in pairs)


def test_misbehaving_apis_are_their_checks_results_and_the_run_goes_on(tmp_path, capsys):
    spec = f"{write_adapter(tmp_path, MISBEHAVING, 'broken_adapter.py')}:load"
    out = tmp_path / "results"
    assert main(["run", "--adapter", spec, "--cases", str(SEED), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    results = records(out / "broken.jsonl")
    # every API on blog-3x3, 2 dtypes x 3 reductions, value and gradient, and its relations: nothing stopped the run
    assert len(results) == MISBEHAVING_CHECKS
    # none of them has a `grad`: every gradient check is unsupported, with the reason, whatever the call does
    gradients = by_api(results, "grad")
    assert len(gradients) == MISBEHAVING_APIS and all(len(g) == BLOG_CHECKS for g in gradients.values())
    for name, group in gradients.items():
        assert {(r["verdict"], r["message"]) for r in group} == {("unsupported", no_gradient(f"broken.{name}"))}
    apis = by_api(results)
    assert len(apis) == MISBEHAVING_APIS and all(len(g) == BLOG_CHECKS for g in apis.values())
    assert {r["verdict"] for r in apis["good"]} == {"exact"}  # after "mutates" wrote into its inputs
    assert {r["verdict"] for r in apis["mutates"]} == {"exact"}
    assert {(r["verdict"], r["message"]) for r in apis["raises"]} == {("error", "the call raised RuntimeError: kernel exploded")}
    assert {r["verdict"] for r in apis["wrong_shape"]} == {"error"}
    assert all("returned shape (5,)" in r["message"] for r in apis["wrong_shape"])
    assert {r["verdict"] for r in apis["wrong_dtype"]} == {"fail"}
    assert all("returned float16 for" in r["message"] for r in apis["wrong_dtype"])
    # None: the wrong shape for `none`; for a reduction NumPy reads it as an array of dtype object: no float
    assert {(r["reduction"], r["verdict"]) for r in apis["returns_none"]} == {("none", "error"), ("mean", "error"), ("sum", "error")}
    assert all("returned object, which is not a float" in r["message"] for r in apis["returns_none"] if r["reduction"] != "none")
    assert {r["verdict"] for r in apis["returns_strings"]} == {"error"}
    assert all("which is not a float" in r["message"] for r in apis["returns_strings"])
    assert {r["verdict"] for r in apis["wrong_values"]} == {"fail"}
    assert all(r["repro"].startswith("# no reproducer: broken.wrong_values's repro raised KeyError") for r in apis["wrong_values"])
    # the relations: each API's in both dtypes, with the verdicts its calls give them
    relations: dict[str, list] = {}
    for r in results:
        if r["quantity"] in RELATIONS:
            relations.setdefault(r["api"].removeprefix("broken."), []).append((r["dtype"], r["quantity"], r["verdict"]))
    assert {name: sorted(found) for name, found in relations.items()} == {
        name: sorted((dtype, relation, verdict) for dtype in ("float32", "float64") for relation, verdict in expected)
        for name, expected in MISBEHAVING_RELATIONS.items()
    }
    assert {r["message"] for r in by_api(results, "symmetry")["raises"] + by_api(results, "mean-vs-sum")["raises"]} == {
        "the call raised RuntimeError: kernel exploded"
    }
    # each problem is printed naming its case and API
    assert "seed/blog-3x3 · broken.raises · float32 · none: error: the call raised RuntimeError: kernel exploded" in text
    assert "seed/blog-3x3 · broken.wrong_shape · float64 · mean: error: returned shape (5,), expected ()" in text
    problems = MISBEHAVING_PROBLEMS * BLOG_CHECKS + MISBEHAVING_RELATION_PROBLEMS
    assert f"FAILED: {problems} of {MISBEHAVING_CHECKS} results are problems" in text


def test_misbehaving_apis_in_pytest_fail_their_own_tests_only(pytester, tmp_path):
    spec = f"{write_adapter(tmp_path, MISBEHAVING, 'broken_adapter.py')}:load"
    result = run_suite(pytester, "--adapter", spec, "--conformance-cases", str(SEED))
    result.assert_outcomes(
        passed=2 * BLOG_CHECKS + MISBEHAVING_RELATION_PASSES + 1,
        failed=MISBEHAVING_PROBLEMS * BLOG_CHECKS + MISBEHAVING_RELATION_PROBLEMS,
        skipped=MISBEHAVING_APIS * BLOG_CHECKS,  # the gradient checks: no API has a `grad`
    )
    failed = [line for line in result.outlines if line.startswith("FAILED")]
    ids = [line.rpartition("[")[2] for line in failed]  # the test ids: the path may hold "-grad" (wt-target-grad)
    assert not any("broken.good" in i or "broken.mutates" in i or "-grad" in i for i in ids)
    assert any("[seed/blog-3x3-broken.raises-float32-none]" in line for line in failed)
    assert any("[seed/blog-3x3-broken.raises-float32-none-symmetry]" in line for line in failed)
    assert any("[seed/blog-3x3-broken.wrong_dtype-float64-mean-mean-vs-sum]" in line for line in failed)
    assert not any("broken.wrong_values" in line and ("-symmetry]" in line or "-mean-vs-sum]" in line) for line in failed)


def test_a_known_divergence_file_covers_a_third_party_api(tmp_path, capsys):
    spec = f"{write_adapter(tmp_path, MISBEHAVING, 'broken_adapter.py')}:load"
    divergences = tmp_path / "broken_divergences.yaml"
    divergences.write_text(
        "- id: raises\n  api: broken.raises\n  where: {quantity: value}\n  reason: no kernel\n  source: https://example.invalid/1\n",
        encoding="utf-8",
    )
    out = tmp_path / "results"
    main(["run", "--adapter", spec, "--cases", str(SEED), "--out", str(out), "--divergences", str(divergences)])
    capsys.readouterr()
    results = records(out / "broken.jsonl")
    raises = by_api(results)["raises"]
    assert {(r["verdict"], r["divergence"]) for r in raises} == {("known_divergence", "raises")}
    # the entry's region is of values only; the gradients stay unsupported,
    # and the relations, which call it too, stay errors
    gradients = by_api(results, "grad")["raises"]
    assert {(r["verdict"], r["divergence"]) for r in gradients} == {("unsupported", "")}
    relations = by_api(results, "symmetry")["raises"] + by_api(results, "mean-vs-sum")["raises"]
    assert len(relations) == 4 and {(r["verdict"], r["divergence"]) for r in relations} == {("error", "")}


def test_the_example_passes_validation_as_written():
    framework = load_adapter(f"{EXAMPLE}:load")
    assert isinstance(framework, Framework) and all(isinstance(api, Api) for api in framework.apis)
    assert [api.dtypes for api in framework.apis] == [("float64",), ("float64",)]


# ---------------------------------------------------------------------------------------------
# an adapter's own variant and its own known divergences: the paddle_like example

PADDLE_LIKE = REPO / "examples" / "adapters" / "paddle_like_adapter.py"
PADDLE_LIKE_CASES = """\
schema_version: 1
description: the paddle_like example end to end
cases:
  - id: clamped-ends
    why: p at 0 and 1 and past the clamp, where the declared variant holds
    probs: [0, 1, 1.0e-50, 0.5]
    target: [1, 0, 1, 1]
    dtypes: [float64]
    reductions: [none, sum]
  - id: floored-backward
    why: p(1 - p) under 1e-12, where the backward's floor is Paddle's double 1e-12
    probs: [1.0e-13, 0.25]
    target: [1, 1]
    dtypes: [float64]
    reductions: [none]
  - id: small-p
    why: log(1 - p) of the rounded 1 - p, the shipped catalogue's mechanism
    probs: [1.0e-10, 0.25]
    target: [0, 0]
    dtypes: [float64]
    reductions: [none]
"""


def paddle_like_run(tmp_path, spec: str, capsys) -> tuple[int, dict[str, dict]]:
    cases = tmp_path / "paddle_like.yaml"
    cases.write_text(PADDLE_LIKE_CASES, encoding="utf-8")
    out = tmp_path / "results"
    code = main(["run", "--adapter", spec, "--cases", str(cases), "--out", str(out)])
    capsys.readouterr()
    results = records(out / "paddle_like.jsonl")
    return code, {f"{r['case'].split('/')[-1]}-{r['reduction']}-{r['quantity']}": r for r in results}


def test_an_adapter_declares_its_own_variant_and_ships_its_catalogue(tmp_path, capsys):
    code, results = paddle_like_run(tmp_path, f"{PADDLE_LIKE}:load", capsys)
    assert code == 0
    verdicts = {key: (r["verdict"], r["variant"], r["divergence"]) for key, r in results.items()}
    variant = "log_clamp(-100, grad_denominator_floor=1e-12 in float64)"
    assert verdicts == {
        "clamped-ends-none-value": ("acceptable", variant, ""),  # -log 0 = inf, clamped at 100
        "clamped-ends-sum-value": ("acceptable", variant, ""),
        "clamped-ends-none-grad": ("acceptable", variant, ""),  # (0 - 1)/max(0, 1e-12), not -1/0
        "clamped-ends-sum-grad": ("acceptable", variant, ""),
        "floored-backward-none-value": ("exact", "", ""),
        "floored-backward-none-grad": ("acceptable", variant, ""),  # the floor is the double 1e-12
        "small-p-none-value": ("known_divergence", "", "log-of-rounded-one-minus-p"),  # the adapter's own catalogue
        "small-p-none-grad": ("exact", "", ""),
    }
    assert results["small-p-none-value"]["source"].startswith("https://github.com/PaddlePaddle/Paddle/")


def test_torchs_variant_does_not_fit_the_paddle_like_backward(tmp_path, capsys, monkeypatch):
    # torch's log_clamp(-100) floors the backward at the float32 1e-12 (9.99999996e-13): in float64 that is
    # 4e-9 relative off Paddle's double 1e-12, millions of ULPs, so the floored gradient is a fail under it
    import dataclasses

    from conformance import variants

    module = load_module(PADDLE_LIKE)
    monkeypatch.setattr(module, "PADDLE_LOG_CLAMP", variants.get("log_clamp(-100)"))
    spec = f"{write_adapter(tmp_path, 'from paddle_like_module import load', 'torchlike.py')}:load"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "paddle_like_module", module)
    code, results = paddle_like_run(tmp_path, spec, capsys)
    assert code == 1 and results["floored-backward-none-grad"]["verdict"] == "fail"
    assert results["clamped-ends-none-value"]["verdict"] == "acceptable"  # the clamp itself is the same
    assert dataclasses.replace(variants.get("log_clamp(-100)")).constants_dtype == "float32"


def load_module(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("paddle_like_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_adapters_catalogue_is_judged_on_the_projects_cases_only(tmp_path):
    # like a built-in catalogue: a run of other cases cannot tell a stale mechanism from one it does not reach;
    # a file given to the run (--divergences) is judged on any run
    from conformance.runner import PROJECT_CASES, plan

    cases = tmp_path / "paddle_like.yaml"
    cases.write_text(PADDLE_LIKE_CASES, encoding="utf-8")
    given = tmp_path / "given.yaml"
    given.write_text((PADDLE_LIKE.with_name("paddle_like_divergences.yaml")).read_text(encoding="utf-8").replace("id: log-", "id: given-"))
    run_plan = plan(None, [cases], [given], adapter=f"{PADDLE_LIKE}:load")
    assert [e.id for e in run_plan.known] == ["log-of-rounded-one-minus-p", "given-of-rounded-one-minus-p"]
    assert [e.id for e in run_plan.judged_divergences()] == ["given-of-rounded-one-minus-p"]
    whole = plan(None, [PROJECT_CASES], adapter=f"{PADDLE_LIKE}:load")
    assert [e.id for e in whole.judged_divergences()] == ["log-of-rounded-one-minus-p"]


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("known_divergences", ("nowhere.yaml",), "known_divergences: no such file 'nowhere.yaml'"),
        ("known_divergences", "nowhere.yaml", "known_divergences must be a tuple of paths"),
        ("device", "", "device must be a non-empty str"),
        ("multiply", 3, "multiply is an int, not a callable or None"),
    ],
)
def test_a_bad_framework_field_is_an_adapter_error(tmp_path, field, value, words):
    import dataclasses

    from conformance.adapters import validate_framework

    framework = dataclasses.replace(load_adapter(f"{PADDLE_LIKE}:load"), **{field: value})
    with pytest.raises(AdapterError, match=re.escape(words)):
        validate_framework(framework, "adapter 'x'")


def test_a_bad_catalogue_of_an_adapter_is_an_error_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  api: paddle_like.*\n  where: {quantity: value}\n  source: s\n", encoding="utf-8")  # no reason
    body = f"""
        import dataclasses, importlib.util
        spec = importlib.util.spec_from_file_location("pl", {str(PADDLE_LIKE)!r})
        pl = importlib.util.module_from_spec(spec); spec.loader.exec_module(pl)
        def load():
            return dataclasses.replace(pl.load(), known_divergences=({str(bad)!r},))
    """
    spec = f"{write_adapter(tmp_path, body, 'bad_catalogue.py')}:load"
    assert main(["run", "--adapter", spec, "--cases", str(SEED), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "reason" in err
