"""Mutation tests of the suite: a correct in-dtype implementation passes, and each single-bug mutant of it fails.

The subject is tests/subjects/careful.py, binary cross-entropy computed as carefully as one can in the dtype
under test, whose every result is fixed by construction (correctly rounded elementary functions, IEEE 754
for the rest); its mutants each differ from it in one step, a bug seen in real code. Here they run, through
the public adapter path (``runner.plan`` with ``adapter=...``), on a few cases of the library that between
them exercise every bug; benchmarks/mutants.py runs them all on the whole library and prints the table.

What is asserted: the careful subject gets no `fail`, `error` or `unexpected_pass` (a miss past the tolerance
that its conditioning explains is `conditioned`, not a failure), and every mutant gets at least one `fail` —
a bug that no check catches would be a hole in the suite.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conformance.runner import plan

REPO = Path(__file__).resolve().parents[1]
ADAPTER = REPO / "tests" / "subjects" / "careful.py"
PROBLEMS = {"fail", "error", "unexpected_pass"}

# cases/<file>: the ids of its cases that run here, and the bugs they are there for
SUBSET = {
    # biases, reductions, gradient signs, float64 in float32, the two-step chain
    "seed.yaml": ["blog-3x3", "blog-hand-computation"],
    "weights.yaml": ["weight-elementwise", "pos-weight-per-class"],  # the weight in the gradient, pos_weight's term
    "label_smoothing.yaml": ["blog-logits-ls0.1"],  # the smoothed target
    "extreme_logits.yaml": ["large-pos-t0", "plus-inf-t1"],  # clamps, log(σ(x)) and exp overflow; 0·inf at x = +inf
    "moderate_logits.yaml": ["t0"],  # softplus losing e^x below 0, and its threshold at 20 (float64 x = 30)
    "target_gradients.yaml": ["blog-3x3-logits"],  # the target gradient's sign
    "probabilities.yaml": [
        "zero-and-one",  # 0·log 0, and the undeclared clip of p
        "small-p-target-0",  # log(1 - p) where 1 - p rounds
        "nan-inputs",  # NaN in, NaN out, on probabilities
    ],
    "scale.yaml": ["probs-float32", "probs-float16"],  # the reductions of the loss on probabilities alone
}
# the sweeps of the library (thousands of inputs each): every mutant must be caught without them, by a case
# chosen for its bug
SWEEPS = {"dense_sweeps.yaml", "exhaustive_16bit.yaml", "logit_sweep.yaml"}
# and a case file of the subjects' own: a sum long enough for a running float16 or bfloat16 sum to stall
OWN_CASES = {REPO / "tests" / "subjects" / "long_sums.yaml": ["half-precision-4096"]}
FILES = [REPO / "cases" / name for name in SUBSET] + list(OWN_CASES)
SELECTED = {f"{Path(name).stem}/{case}" for name, ids in [*SUBSET.items(), *OWN_CASES.items()] for case in ids}


def _careful_module():
    """tests/subjects/careful.py as a module of its own (the adapter path imports it under another name)."""
    if "careful_subject" not in sys.modules:
        spec = importlib.util.spec_from_file_location("careful_subject", ADAPTER)
        module = importlib.util.module_from_spec(spec)
        sys.modules["careful_subject"] = module  # its dataclass looks its module up there
        spec.loader.exec_module(module)
    return sys.modules["careful_subject"]


MUTANTS = _careful_module().MUTANTS


def selected(check) -> bool:
    return check.case.full_name in SELECTED


def results(loader: str, stop_at_first_problem: bool = False) -> list[tuple[str, str, str]]:
    """(check id, verdict, message) of the subset's checks for the subject the loader loads, in the plan's order."""
    run = plan(None, FILES, adapter=f"{ADAPTER}:{loader}")
    out = []
    for check in filter(selected, run.checks):
        result = run.runner.run(check)
        out.append((check.id, result.verdict, result.message))
        if stop_at_first_problem and result.verdict in PROBLEMS:
            break
    return out


def test_the_subset_selects_cases_of_every_kind():
    run = plan(None, FILES, adapter=f"{ADAPTER}:load")
    chosen = [check for check in run.checks if selected(check)]
    assert {check.case.full_name for check in chosen} == SELECTED, "a case id of SUBSET is not in its file"
    quantities = {"value", "grad", "grad_target", "symmetry", "mean-vs-sum", "vs-fused"}
    assert {check.quantity for check in chosen} == quantities
    assert {check.api.op for check in chosen} == {"bce", "bce_with_logits", "sigmoid_bce"}
    assert {check.dtype for check in chosen} == {"float16", "bfloat16", "float32", "float64"}


def test_the_subset_is_hand_picked():
    assert not SWEEPS & set(SUBSET), "a mutant must be caught by a case chosen for its bug, not only by a sweep"
    assert SWEEPS <= {path.name for path in (REPO / "cases").glob("*.yaml")}, "a sweep file was renamed"


def test_the_careful_subject_gets_no_failure():
    got = results("load")
    problems = [f"{check_id}: {verdict}: {message}" for check_id, verdict, message in got if verdict in PROBLEMS]
    assert not problems, "\n".join(problems)
    assert sum(verdict == "exact" for _, verdict, _ in got) > len(got) // 2


@pytest.mark.parametrize("name", list(MUTANTS))
def test_every_mutant_fails_a_check(name):
    got = results("load_" + name.replace("-", "_"), stop_at_first_problem=True)
    failing = [(check_id, message) for check_id, verdict, message in got if verdict == "fail"]
    assert failing, f"mutant {name} ({MUTANTS[name][1]}): no check of the subset fails it"


def test_each_mutant_differs_from_the_careful_subject_in_one_method():
    module = _careful_module()
    for name, (subclass, description) in module.MUTANTS.items():
        assert subclass.__bases__ == (module.Careful,), name
        overridden = [attribute for attribute in vars(subclass) if callable(vars(subclass)[attribute])]
        assert len(overridden) == 1 and hasattr(module.Careful, overridden[0]), (name, overridden)
        assert description and hasattr(module, "load_" + name.replace("-", "_")), name
