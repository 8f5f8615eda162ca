"""Runs one check, (case, API, dtype, reduction), from the cast inputs to a result record.

case → inputs cast to the dtype → the API's call and the exact reference → verdict → ``Result``.
Nothing here raises for a framework's misbehaviour: an exception, a wrong shape, a wrong dtype or a
call that runs past the time limit becomes the check's verdict.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import mpmath
import numpy as np

from conformance import cache as reference_cache
from conformance import conditioning, fast_reference, metamorphic, numerics, regions
from conformance import divergences as divergence_list
from conformance.adapters import Api, Framework, Unsupported, load_adapter, load_framework
from conformance.cases import Case
from conformance.cases import load as load_cases
from conformance.dtypes import DTYPES, FloatFormat, get_format, round_to_format, to_hex
from conformance.isolation import WorkerSpec
from conformance.reference import FORMULA_OF_OP, ReferenceError, ReferenceValue
from conformance.results import Result
from conformance.variants import combine, describe
from conformance.verdicts import (
    Conditioning,
    Judgement,
    Verdict,
    conditioning_of,
    exact_decimal,
    expectation_mismatch,
    judge,
    judge_conditioning,
    tolerance_for,
)

PROJECT_CASES = "cases"  # the project's case folder, relative to where a run starts (tox: the project root)
BUILTIN_PREFIX = "conformance/known_divergences/"  # the file name of a built-in catalogue entry
OBSERVED = " Observed: "  # joins a known divergence's reason and what this result showed
MAX_REPRO_ELEMENTS = 64  # a reduction's reproducer carries its whole input up to this size


QUANTITIES = ("value", "grad", "grad_target")  # the loss, its gradient with respect to the input, and to the target


@dataclass(frozen=True, eq=False)
class Check:
    case: Case
    api: Api
    dtype: str
    reduction: str
    quantity: str = "value"

    @property
    def id(self) -> str:
        suffix = "" if self.quantity == "value" else f"-{self.quantity}"
        return f"{self.case.full_name}-{self.api.name}-{self.dtype}-{self.reduction}{suffix}"


def enumerate_checks(cases: list[Case], apis: list[Api]) -> list[Check]:
    """Every (case, API, dtype, reduction, value or gradient) the cases ask for, in that order, each
    (case, API, dtype) followed by the metamorphic relations that apply to it."""
    checks = []
    for case in cases:
        for api in apis:
            if api.op not in case.ops:
                continue
            for dtype in case.dtypes:
                checks += [
                    Check(case, api, dtype, reduction, quantity)
                    for reduction in case.reductions
                    for quantity in _quantities(case)
                ]
                checks += [Check(case, api, dtype, reduction, relation) for reduction, relation in _relations(case, api, dtype, apis)]
    return checks


def _quantities(case: Case) -> tuple[str, ...]:
    """value; grad unless the case sets `gradients: false`; grad_target when it sets `target_gradients: true`."""
    return ("value",) + (("grad",) if case.gradients else ()) + (("grad_target",) if case.target_gradients else ())


def _relations(case: Case, api: Api, dtype: str, apis: list[Api]) -> list[tuple[str, str]]:
    """The metamorphic relations (reduction, name) that apply to this API on this case."""
    out = []
    if api.axis_mean:  # its results are row means: only mean-vs-sum, over the rows (see _mean_vs_sum)
        return [("mean", "mean-vs-sum")] if {"mean", "sum"} <= set(case.reductions) else []
    if "none" in case.reductions and metamorphic.mirrors_exactly(case.inputs(get_format(dtype)), get_format(dtype)):
        out.append(("none", "symmetry"))
    if {"mean", "sum"} <= set(case.reductions):
        out.append(("mean", "mean-vs-sum"))
    if api.op == "sigmoid_bce" and "none" in case.reductions and _fused(api, apis) is not None:
        out.append(("none", "vs-fused"))
    return out


def _fused(api: Api, apis: list[Api]) -> Api | None:
    """The framework's fused loss on logits, which the two-step ``api`` is compared with."""
    return next((a for a in apis if a.framework == api.framework and a.op == "bce_with_logits"), None)


SWEEP_ELEMENTS_KEPT = 4096  # a larger sweep keeps, per target and bin of x, its first and its worst element


def _elements(case: Case, inputs, values: np.ndarray, ref: ReferenceValue, judgement: Judgement, fmt: FloatFormat) -> dict:
    """A sweep result's every element, flattened in C order: the input, the target, the result, the
    correctly rounded exact value and the error in ULPs. Past ``SWEEP_ELEMENTS_KEPT`` elements (an
    exhaustive sweep), for each target the elements in ascending x are cut into bins and each bin
    keeps its first element (the curve) and its worst one (the error), plus the last, with ``sampled_from`` the count."""
    shape = ref.shape
    flat = {name: np.broadcast_to(np.asarray(inputs[name], dtype=np.float64), shape).ravel() for name in (case.kind, "target")}
    columns = {
        "x": flat[case.kind],
        "target": flat["target"],
        "got": values.ravel(),
        "want": ref.rounded.ravel(),
        "ulp": np.asarray(judgement.ulps, dtype=np.float64),
    }
    size = columns["x"].size
    kept = np.arange(size)
    if size > SWEEP_ELEMENTS_KEPT:
        targets = np.unique(columns["target"][~np.isnan(columns["target"])])
        bins = max(1, SWEEP_ELEMENTS_KEPT // (2 * max(len(targets), 1)))
        picks = []
        for target in targets:
            group = np.nonzero(columns["target"] == target)[0]
            group = group[np.argsort(columns["x"][group], kind="stable")]
            for chunk in np.array_split(group, min(bins, group.size)):
                errors = np.nan_to_num(columns["ulp"][chunk], nan=np.inf)
                picks += [chunk[0], chunk[int(np.argmax(errors))]]
            picks.append(group[-1])  # the sweep's end
        kept = np.unique(np.array(picks + list(np.nonzero(np.isnan(columns["target"]))[0]), dtype=np.int64))
    out = {name: [float(v) for v in column[kept]] for name, column in columns.items()}
    if kept.size < size:
        out["sampled_from"] = int(size)
    return out


DEFAULT_TIMEOUT = 600.0  # seconds a framework call may take (--conformance-timeout, CONFORMANCE_TIMEOUT; 0: no limit)


def parse_timeout(text: str | float) -> float:
    """A time limit in seconds from the command line or CONFORMANCE_TIMEOUT: a finite number ≥ 0 (0: no
    limit); ValueError saying so otherwise."""
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"time limit {text!r}: a finite number of seconds, 0 for no limit (--timeout, CONFORMANCE_TIMEOUT)")
    return seconds


class CallTimeout(BaseException):
    """A framework call ran past the time limit. A BaseException, so that no ``except Exception``
    (the adapter's or the runner's) takes it for the framework's own error."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


def timeout_message(seconds: float) -> str:
    return (
        f"timeout: the framework call ran past the time limit of {seconds:g} s and was stopped "
        "(--conformance-timeout / CONFORMANCE_TIMEOUT)"
    )


@contextmanager
def time_limit(seconds: float | None):
    """Raises CallTimeout in the block once ``seconds`` have passed (SIGALRM, so only in the main
    thread of a platform that has it; elsewhere, or with 0 or None, no limit). A hang in C code that
    never returns to the interpreter (or blocks the signal, or holds the GIL) is not interrupted by it:
    the run's supervisor (conformance.isolation) ends such a call with the worker process it runs in."""
    if not seconds or seconds <= 0:
        yield
        return
    alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    previous = None
    if alarm:

        def expired(signum, frame):
            raise CallTimeout(seconds)

        previous = signal.signal(signal.SIGALRM, expired)
        started = time.monotonic()
        outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)  # another timer's (pytest-timeout's) time left
    try:
        yield
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer > 0:  # put the other timer back, less the time the call took
                signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3))


# what an API's call may raise that is its check's error: any Exception, and SystemExit and
# KeyboardInterrupt raised by the API itself (a check runs in a worker process of its own session,
# conformance.isolation, which a Ctrl-C at the terminal does not reach; in-process, a Ctrl-C during a
# framework call is that check's error and the next one stops the run)
API_ERRORS = (Exception, SystemExit, KeyboardInterrupt)


class ExpectationError(Exception):
    """A case's `expect` literal contradicts the exact reference."""


class _BadResult(Exception):
    """An API's call raised, or returned something that is not a float result of the right shape."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


class ExactValues:
    """The cases' inputs cast to each dtype and their exact references, computed once each per process,
    and across processes and runs through the content-addressed cache (conformance.cache)."""

    def __init__(self):
        self._inputs: dict = {}
        self._references: dict = {}

    def inputs(self, case: Case, fmt: FloatFormat) -> dict[str, np.ndarray]:
        key = (str(case.file), case.id, fmt.name)
        if key not in self._inputs:
            self._inputs[key] = case.inputs(fmt)
        return self._inputs[key]

    def reference(
        self,
        case: Case,
        op: str,
        fmt: FloatFormat,
        reduction: str,
        gradient: bool = False,
        axis_mean: bool = False,
        wrt: str = "input",
    ) -> ReferenceValue:
        """The exact reference (loss, or its gradient), with the case's `expect` literals checked against the loss
        (``axis_mean``: the reductions of an API that averages over the last axis; the literals, which are
        elementwise, are not checked against those)."""
        formula = FORMULA_OF_OP[op]
        key = (str(case.file), case.id, formula, fmt.name, reduction, gradient, axis_mean, wrt)
        if key not in self._references:
            value = reference_cache.reference(
                formula, self.inputs(case, fmt), reduction, fmt, gradient=gradient, axis_mean=axis_mean, wrt=wrt
            )
            literal = None if gradient or axis_mean else case.expected(fmt.name).get(reduction)
            if literal is not None:
                try:
                    _check_expectation(literal, value, fmt, reduction)
                except ExpectationError as exc:  # named as the loader names a bad file: file:line, case, field
                    where = f"{case.file}:{case.line}" if case.line else str(case.file)
                    field = f"expect.{fmt.name}.{reduction}" if reduction in case.expect.get(fmt.name, {}) else f"expect.{reduction}"
                    raise ExpectationError(f"{where}: case '{case.id}': field '{field}': {exc}") from None
            self._references[key] = value
        return self._references[key]

    def variant_reference(
        self,
        case: Case,
        op: str,
        fmt: FloatFormat,
        reduction: str,
        names: tuple[str, ...],
        gradient: bool = False,
        axis_mean: bool = False,
    ) -> ReferenceValue:
        """The exact loss (or gradient) under the documented variants ``names`` (see conformance.variants)."""
        key = (str(case.file), case.id, op, fmt.name, reduction, names, gradient, axis_mean)
        if key not in self._references:
            self._references[key] = reference_cache.reference(
                FORMULA_OF_OP[op],
                self.inputs(case, fmt),
                reduction,
                fmt,
                combine(names),
                two_step=op == "sigmoid_bce",
                gradient=gradient,
                axis_mean=axis_mean,
            )
        return self._references[key]


class Runner:
    """Runs checks for one framework; its APIs share the cast inputs and the references."""

    def __init__(
        self,
        framework: Framework,
        known: list[divergence_list.KnownDivergence] = (),
        timeout: float | None = DEFAULT_TIMEOUT,
        device: str = "",
    ):
        self.framework = framework
        self.device = device  # each result's device: the framework's name for it off the CPU, "" on it
        self.known = list(known)
        self.exact = ExactValues()
        self.timeout = timeout  # seconds each framework call may take; 0 or None: no limit
        self.calling = nullcontext  # entered around each framework call (the isolation worker tells its supervisor)

    def run(self, check: Check) -> Result:
        self._outcome: Conditioning | None = None  # the measurement's elements past the tolerance (see _explain)
        try:
            result = self._relation(check) if check.quantity in metamorphic.RELATIONS else self._judge(check)
            if result.verdict != Verdict.UNSUPPORTED.value:
                self._explain(check, result)
        except CallTimeout as exc:  # the framework hung: this check's error, which no known divergence stands for
            return self.error(check, timeout_message(exc.seconds))
        except Exception as exc:  # a bug of the suite's own (reading the catalogue too): this check's error, no other's
            result = self._blank(check)
            result.message = f"bce-conformance raised {_first_line(exc)} (a bug in the suite, not the framework)"
            return result  # no known divergence can stand for it
        return result

    def _explain(self, check: Check, result: Result) -> None:
        """The known divergences over a result: the entries whose region its input reaches are recorded; a fail or
        error whose every element past the tolerance (beyond its conditioning) lies in some region is a known
        divergence, one with elements in no region stays a fail, those elements named."""
        concerned = divergence_list.concerning(
            self.known, check.case.full_name, check.api.name, check.api.op, check.dtype, check.reduction, check.quantity
        )
        if not concerned:
            return
        inputs = self.exact.inputs(check.case, get_format(check.dtype))
        problem = result.verdict in (Verdict.FAIL.value, Verdict.ERROR.value)
        outcome = self._outcome
        errors = outcome.errors if outcome is not None else None
        # the elements to explain: those beyond their conditioning; None (no element to blame): the call raised, or
        # the dtype changed, before any element was judged
        misses = (outcome.beyond_elements if outcome is not None else None) if problem else np.zeros((), dtype=bool)
        explanation = divergence_list.explain(concerned, inputs, check.quantity, misses, errors)
        result.in_regions = explanation.touched
        if not problem or not explanation.entries:
            return
        result.explained = explanation.figures
        first = explanation.entries[0]
        result.divergence, result.source, result.when = first.id, first.source, first.when_record
        if explanation.complete:
            also = [e.id for e in explanation.entries[1:]]
            result.message = f"{first.reason}{OBSERVED}{result.message}" + (f" (other elements: {', '.join(also)})" if also else "")
            result.verdict = Verdict.KNOWN_DIVERGENCE.value
            return
        result.message += "; " + _unexplained_message(explanation.unexplained, inputs, errors, explanation.entries)

    def error(self, check: Check, message: str) -> Result:
        """The check's ``error`` record with ``message``: for what ends a check outside the runner (a crashed
        process, reported by the plugin) or stops it (a time limit)."""
        result = self._blank(check)
        result.message = message
        return result

    def _call(self, function, inputs, reduction: str):
        """A framework call, under the time limit."""
        with self.calling(), time_limit(self.timeout):
            return function(inputs, reduction)

    def _blank(self, check: Check) -> Result:
        """The check's record before any verdict (an error until something better is known)."""
        return Result(
            case=check.case.full_name,
            framework=self.framework.name,
            api=check.api.name,
            op=check.api.op,
            dtype=check.dtype,
            reduction=check.reduction,
            quantity=check.quantity,
            verdict=Verdict.ERROR.value,
            reduced_by=check.api.reduced_by if check.reduction != "none" or check.api.axis_mean else "",
            file=str(check.case.file),
            framework_versions=dict(self.framework.versions),
            device=self.device,
        )

    def _judge(self, check: Check) -> Result:
        case, api, fmt = check.case, check.api, get_format(check.dtype)
        result = self._blank(check)
        inputs = self.exact.inputs(case, fmt)
        gradient = check.quantity in ("grad", "grad_target")
        wrt = "target" if check.quantity == "grad_target" else "input"
        reason = api.why_unsupported(check.dtype, inputs, check.quantity)
        if reason:
            result.verdict, result.message = Verdict.UNSUPPORTED.value, reason
            return result
        try:
            ref = self.exact.reference(case, api.op, fmt, check.reduction, gradient, api.axis_mean, wrt)
        except (ReferenceError, ExpectationError) as exc:
            result.message = f"reference: {exc}"
            return result
        try:
            function = {"value": api.call, "grad": api.grad, "grad_target": api.grad_target}[check.quantity]
            got = np.asarray(self._call(function, dict(inputs), check.reduction))
        except Unsupported as exc:
            result.verdict, result.message = Verdict.UNSUPPORTED.value, str(exc)
            return result
        except API_ERRORS as exc:  # the framework's own error is this check's result (no element to blame)
            result.message = f"{EMPTY if _is_empty(inputs) else ''}the call raised {_first_line(exc)}"
            result.repro = "" if gradient else self._repro(check, inputs, ref, None)
            return result
        if got.shape != ref.shape:
            result.message = f"returned shape {got.shape}, expected {ref.shape}"
            return result
        if not _is_float(got):  # numpy would read strings such as "0.5" as numbers: no loss is a string
            result.message = f"returned {got.dtype}, which is not a float"
            return result
        try:
            values = got.astype(np.float64)
        except (TypeError, ValueError) as exc:
            result.message = f"returned {got.dtype}, which is not a float: {exc}"
            return result
        judgement = judge(values, ref, fmt, tolerance_for(check.dtype, case.tolerance))
        result.max_ulp = judgement.max_ulp
        result.median_ulp = judgement.median_ulp
        result.floor_accepted = judgement.floor_accepted
        if case.sweep and check.reduction == "none" and not api.axis_mean:
            result.elements = _elements(case, inputs, values, ref, judgement, fmt)
        result.worst = self._worst(inputs, ref, judgement, fmt, api.axis_mean)
        if check.reduction == "none" and not api.axis_mean:  # per element: the report's table by region
            result.regions = regions.summarize(
                case.kind, inputs, ref.shape, judgement.ulps, judgement.missing, fmt, tolerance_for(check.dtype, case.tolerance).max_ulp
            )
        if got.dtype != fmt.numpy_dtype:
            result.verdict = Verdict.FAIL.value
            what = f"{EMPTY}returned {_returned(values)} in" if _is_empty(inputs) else "returned"
            result.message = f"{what} {got.dtype} for {check.dtype} inputs (a silent change of dtype)"
        elif judgement.passed:
            result.verdict = Verdict.EXACT.value
            if _is_empty(inputs):  # the framework's policy for no elements, on record (not only in `worst`)
                result.message = f"{EMPTY}returned {_returned(values)}"
            return result
        elif api.variants and check.quantity != "grad_target" and self._matches_variant(check, values, fmt, result):
            # no variant is defined for target gradients: a miss there is a fail or a known divergence
            return result
        else:
            tolerance = tolerance_for(check.dtype, case.tolerance)
            missed = (
                f"max error {_ulps(judgement.max_ulp)} ULP exceeds the {check.dtype} tolerance of "
                f"{tolerance.max_ulp:g} ULP (absolute floor {tolerance.abs_floor:g})"
            )
            conditioned = self._conditioning(check, inputs, values, ref, judgement, fmt, tolerance, result)
            self._outcome = conditioned
            if conditioned.within:
                result.verdict = Verdict.CONDITIONED.value
                result.message = f"{missed}, but {_within_message(conditioned, tolerance)}"
                return result
            result.verdict = Verdict.FAIL.value
            result.message = f"{missed}; {_beyond_message(conditioned, tolerance)}"
            if _is_empty(inputs):
                result.message = f"{EMPTY}returned {_returned(values)}: {result.message}"
        if not gradient:  # the reproducers call the loss; a gradient's is not written yet
            # (an empty `none` result has no worst element: the whole input is reproduced)
            worst = judgement.worst[0].index if check.reduction == "none" and judgement.worst else None
            result.repro = self._repro(check, inputs, ref, worst)
        return result

    def _relation(self, check: Check) -> Result:
        """A metamorphic check: the relation holds (exact) or not (fail), with the distances measured."""
        case, api, fmt = check.case, check.api, get_format(check.dtype)
        result = self._blank(check)
        inputs = self.exact.inputs(case, fmt)
        reason = api.why_unsupported(check.dtype, inputs)
        if check.quantity == "vs-fused" and not reason:
            fused_reason = _fused(api, self.framework.apis).why_unsupported(check.dtype, inputs)
            reason = fused_reason and f"the fused path: {fused_reason}"  # the relation needs both paths
        if reason:
            result.verdict, result.message = Verdict.UNSUPPORTED.value, reason
            return result
        tolerance = tolerance_for(check.dtype, case.tolerance)
        measure = {"symmetry": self._symmetry, "mean-vs-sum": self._mean_vs_sum, "vs-fused": self._vs_fused}
        try:
            holds, outcome = measure[check.quantity](check, inputs, fmt, tolerance, result)
        except Unsupported as exc:
            result.verdict, result.message = Verdict.UNSUPPORTED.value, str(exc)
            return result
        except _BadResult as exc:
            result.max_ulp, result.worst, result.message = None, [], str(exc)
            return result
        except (ReferenceError, ExpectationError) as exc:
            result.message = f"reference: {exc}"
            return result
        if _is_empty(inputs):  # as every result's on an input without elements
            result.message = f"{EMPTY}{result.message}"
        if holds:
            result.verdict = Verdict.EXACT.value
            return result
        self._outcome = outcome  # an elementwise relation's (None for mean-vs-sum, whose whole input is blamed)
        if outcome is not None and outcome.within:
            result.verdict = Verdict.CONDITIONED.value
            result.message = f"relation {check.quantity} misses the tolerance: {result.message}, but {_within_message(outcome, tolerance)}"
        else:
            result.verdict = Verdict.FAIL.value
            result.message = f"relation {check.quantity} does not hold: {result.message}" + (
                f"; {_beyond_message(outcome, tolerance)}" if outcome is not None else ""
            )
            result.repro = self._relation_repro(check, inputs, fmt, result)
        return result

    def _relation_repro(self, check: Check, inputs, fmt: FloatFormat, result: Result) -> str:
        """A failed relation's reproducer: its two calls in one line, each printing its result, as a value check's
        reproducer prints its one: at the worst element for symmetry (the call and its mirrored call) and vs-fused
        (the two-step and the fused call), on the whole input for mean-vs-sum (the mean and the sum; "" past
        ``MAX_REPRO_ELEMENTS``, as a reduction's)."""
        if check.quantity != "mean-vs-sum" and not result.worst:
            return ""
        reduction = "sum" if check.quantity == "mean-vs-sum" else "none"  # the reference gives the reproducer its shape
        try:
            reference = self.exact.reference(check.case, check.api.op, fmt, reduction, axis_mean=check.api.axis_mean)
        except (ReferenceError, ExpectationError):
            return ""
        if check.quantity == "mean-vs-sum":
            calls = [(replace(check, reduction=r), inputs, reference, None) for r in ("mean", "sum")]
        else:
            index = tuple(result.worst[0]["index"])
            other = (check, metamorphic.mirrored(inputs)) if check.quantity == "symmetry" else (
                replace(check, api=_fused(check.api, self.framework.apis)), inputs
            )
            calls = [(check, inputs, reference, index), (*other, reference, index)]
        lines = [self._repro(*call) for call in calls]
        unwritten = [line for line in lines if not line or line.startswith("#")]  # "" or "# no reproducer: ..."
        if unwritten:
            return unwritten[0]
        # the imports and tensor helper the two lines share (whole statements, up to a "; "), written once
        shared = os.path.commonprefix(lines)
        shared = shared[: shared.rfind("; ") + 2] if "; " in shared else ""
        return f"{lines[0]}; {lines[1][len(shared):]}"

    def _relation_conditioning(
        self, check: Check, sides, a: np.ndarray, b: np.ndarray, d: np.ndarray, missing: np.ndarray, fmt, tolerance, result
    ) -> Conditioning:
        """The conditioning of a relation's elements that miss it: ``sides`` are (op, inputs) of its two results,
        ``a`` and ``b`` their values, ``d`` their distances in ULPs at ``a``."""
        deviations = [
            conditioning.term_deviations(FORMULA_OF_OP[op], "value", op == "sigmoid_bce", side_inputs, fmt, missing)
            for op, side_inputs in sides
        ]
        bounds, conditions = conditioning.pair_bounds(*deviations, a, b, fmt)
        outcome = conditioning_of(missing, d, bounds, conditions, tolerance)
        _record_conditioning(result, outcome, bounds, conditions)
        return outcome

    def _results(self, api: Api, inputs, reduction: str, shape, own: bool = True) -> np.ndarray:
        """The API's result as float64 of the expected shape, or _BadResult saying what went wrong
        (``own``: the checked API, "the call"; otherwise the other API a relation compares with)."""
        try:
            got = np.asarray(self._call(api.call, dict(inputs), reduction))
        except Unsupported:
            raise
        except API_ERRORS as exc:  # the framework's own error is this check's result
            raise _BadResult(f"{'the call' if own else api.name} raised {_first_line(exc)}") from None
        expected = (shape[:-1] if api.axis_mean else shape) if reduction == "none" else ()
        if got.shape != expected:
            raise _BadResult(f"{api.name} returned shape {got.shape}, expected {expected}")
        if not _is_float(got):
            raise _BadResult(f"{api.name} returned {got.dtype}, which is not a float")
        return got.astype(np.float64)

    def _symmetry(self, check: Check, inputs, fmt: FloatFormat, tolerance, result: Result) -> bool:
        shape = broadcast_shape(inputs)
        first = self._results(check.api, inputs, "none", shape)
        second = self._results(check.api, metamorphic.mirrored(inputs), "none", shape)
        holds, largest, rows = metamorphic.symmetry(first, second, fmt, tolerance)
        result.max_ulp = largest
        result.worst = [metamorphic.element(r[0], inputs, shape, r[2], r[1], r[3]) for r in rows[:3]]
        result.message = f"L(x, y) and L(-x, 1 - y) differ by up to {_ulps(largest)} ULP"
        if not holds:
            d, missing = _row_arrays(rows, shape)
            sides = [(check.api.op, inputs), (check.api.op, metamorphic.mirrored(inputs))]
            return holds, self._relation_conditioning(check, sides, first, second, d, missing, fmt, tolerance, result)
        return holds, None

    def _mean_vs_sum(self, check: Check, inputs, fmt: FloatFormat, tolerance, result: Result) -> bool:
        shape = broadcast_shape(inputs)
        mean = float(self._results(check.api, inputs, "mean", shape))
        total = float(self._results(check.api, inputs, "sum", shape))
        # n: the terms the API's mean averages (for an API averaging over the last axis, its rows)
        if int(np.prod(shape[:-1] if check.api.axis_mean else shape)) == 0:  # sum / 0 is undefined, whatever the mean
            result.max_ulp = 0.0
            result.message = (
                f"mean = sum / n is undefined for n = 0, so the relation does not apply (the API's mean {to_hex(mean)} "
                f"and sum {to_hex(total)} are judged by their own checks, against the exact NaN and 0)"
            )
            return True, None
        # the API's own `none` terms: for an API averaging over the last axis, its row means (n = rows)
        exact_sum = float(self.exact.reference(check.case, check.api.op, fmt, "sum", axis_mean=check.api.axis_mean).rounded)
        if math.isinf(exact_sum) and total == exact_sum:  # the sum overflows the dtype, as it must: no relation to test
            result.max_ulp = 0.0
            result.message = f"the exact sum overflows {fmt.name} to {total}, as the API's does; mean {to_hex(mean)}: the relation does not apply"
            return True, None  # the summation bound is the relation's own: no conditioning applies
        if int(np.prod(shape)) >= metamorphic.VECTORISED_FROM:  # the terms' magnitude from their float64 bounds
            terms = fast_reference.magnitude_terms(FORMULA_OF_OP[check.api.op], self.exact.inputs(check.case, fmt), check.api.axis_mean)
        else:
            terms = self.exact.reference(check.case, check.api.op, fmt, "none", axis_mean=check.api.axis_mean)
        holds, distance, bound = metamorphic.mean_vs_sum(mean, total, terms, fmt)
        result.max_ulp = distance
        result.message = f"mean {to_hex(mean)} vs sum / n {to_hex(total)} / {terms.size}: {_ulps(distance)} ULP apart" + (
            f" (bound {bound:.3g})" if bound is not None else ""
        )
        return holds, None

    def _vs_fused(self, check: Check, inputs, fmt: FloatFormat, tolerance, result: Result) -> bool:
        shape = broadcast_shape(inputs)
        fused_api = _fused(check.api, self.framework.apis)
        two_step = self._results(check.api, inputs, "none", shape)
        fused = self._results(fused_api, inputs, "none", shape, own=False)
        exact = self.exact.reference(check.case, check.api.op, fmt, "none")
        variant = None  # where the two-step API's declared contract departs from the mathematics, it owes the contract
        if check.api.variants:
            try:
                variant = self.exact.variant_reference(check.case, check.api.op, fmt, "none", check.api.variants)
            except ReferenceError:  # unsettled: every well-conditioned element is compared, as without a variant
                variant = None
        holds, inside, outside = metamorphic.versus_fused(two_step, fused, inputs, exact, fmt, tolerance, variant)
        worst_in = max((r[3] for r in inside), default=0.0)
        worst_out = max(outside, key=lambda r: r[3] if not math.isnan(r[3]) else -1, default=None)
        result.max_ulp = worst_in
        logits = np.broadcast_to(inputs["logits"], shape)
        result.message = f"vs {fused_api.name}: up to {_ulps(worst_in)} ULP apart on the {len(inside)} well-conditioned elements" + (
            f"; departs by up to {_ulps(worst_out[3])} ULP on the other {len(outside)} "
            f"(worst at logits {to_hex(float(logits[worst_out[0]]))})"
            if worst_out is not None
            else ""
        )
        failing = [r for r in inside if not r[4]]
        shown = sorted(failing or inside, key=lambda r: (-r[3] if not math.isnan(r[3]) else 0, r[0]))
        result.worst = [metamorphic.element(r[0], inputs, shape, r[2], r[1], r[3]) for r in shown[:3]]
        if not holds:
            d, missing = _row_arrays(failing, shape)
            sides = [(fused_api.op, inputs), (check.api.op, inputs)]
            return holds, self._relation_conditioning(check, sides, fused, two_step, d, missing, fmt, tolerance, result)
        return holds, None

    def _conditioning(self, check: Check, inputs, values, ref: ReferenceValue, judgement: Judgement, fmt, tolerance, result) -> Conditioning:
        """How the elements that miss the tolerance compare with their condition-aware bounds; the record gets
        the largest ratio and condition number, and each worst element its bound and condition number."""
        api = check.api
        deviations = conditioning.result_deviations(
            FORMULA_OF_OP[api.op], check.quantity, api.op == "sigmoid_bce", inputs, fmt, check.reduction,
            api.axis_mean, judgement.missing,
        )
        bounds, conditions = conditioning.bound_ulps(deviations, values, ref.rounded, fmt)
        outcome = judge_conditioning(judgement, bounds, conditions, tolerance)
        _record_conditioning(result, outcome, bounds, conditions)
        return outcome

    def _matches_variant(self, check: Check, values: np.ndarray, fmt: FloatFormat, result: Result) -> bool:
        """Whether a result that misses the exact value is its API's documented variant (then acceptable)."""
        api = check.api
        try:
            ref = self.exact.variant_reference(
                check.case, api.op, fmt, check.reduction, api.variants, check.quantity == "grad", api.axis_mean
            )
        except ReferenceError:
            return False
        judgement = judge(values, ref, fmt, tolerance_for(check.dtype, check.case.tolerance))
        if not judgement.passed:
            return False
        result.verdict = Verdict.ACCEPTABLE.value
        result.variant = describe(api.variants, api.op)
        result.variant_max_ulp = judgement.max_ulp
        result.source = combine(api.variants).source
        result.message = f"matches the documented variant {result.variant} (max error against the exact value {_ulps(result.max_ulp)} ULP)"
        return True

    def _worst(self, inputs, ref: ReferenceValue, judgement: Judgement, fmt: FloatFormat, axis_mean: bool = False) -> list[dict]:
        shape = ref.shape
        full = broadcast_shape(inputs)
        out = []
        for element in judgement.worst:
            entry = {"index": list(element.index)}
            if shape and axis_mean:  # a row mean: the row's inputs, broadcast
                entry["inputs"] = {
                    name: "[" + ", ".join(to_hex(v) for v in np.broadcast_to(array, full)[element.index].ravel()) + "]"
                    for name, array in inputs.items()
                }
            elif shape:  # elementwise: the element's own inputs, broadcast
                entry["inputs"] = {
                    name: to_hex(np.broadcast_to(array, shape)[element.index]) for name, array in inputs.items()
                }
            entry.update(
                got=to_hex(element.got),
                want=exact_decimal(element.want),
                want_rounded=to_hex(round_to_format(element.want, fmt) if not mpmath.isnan(element.want) else math.nan),
                ulp=element.ulp,
            )
            out.append(entry)
        return out

    def _repro(self, check: Check, inputs, ref: ReferenceValue, index) -> str:
        shape = ref.shape
        if index is not None and check.api.axis_mean:  # the row whose mean is worst, as a 1-d input
            full = broadcast_shape(inputs)
            arrays = {name: list(np.broadcast_to(array, full)[index].ravel()) for name, array in inputs.items()}
            reduction = "none"
        elif index is not None:
            arrays = {name: [np.broadcast_to(array, shape)[index]] for name, array in inputs.items()}
            reduction = "none"
        else:
            full = broadcast_shape(inputs)
            if int(np.prod(full)) > MAX_REPRO_ELEMENTS:
                return ""
            arrays = {name: list(np.broadcast_to(array, full).ravel()) for name, array in inputs.items()}
            reduction = check.reduction
        args = {("input" if name in ("logits", "probs") else name): repr([to_hex(v) for v in values]) for name, values in arrays.items()}
        if check.api.axis_mean:  # the rows matter: the reproducer reshapes its flat lists
            args["shape"] = repr([len(arrays["target"])] if index is not None else list(broadcast_shape(inputs)))
        return check.api.repro(args, check.dtype, reduction)


def _record_conditioning(result: Result, outcome: Conditioning, bounds: np.ndarray, conditions: np.ndarray) -> None:
    """The record's largest bound ratio and condition number, and each worst element's bound and condition number
    where one was computed (for an element past the tolerance)."""
    result.bound_ratio, result.condition = _number_or_none(outcome.ratio), _number_or_none(outcome.condition)
    for entry in result.worst:
        index = tuple(entry["index"])
        if not math.isnan(bounds[index]):
            entry["bound_ulp"], entry["condition"] = float(bounds[index]), float(conditions[index])


def _unexplained_message(unexplained: np.ndarray, inputs, errors, entries, shown: int = 3) -> str:
    """The elements of a fail that no known divergence explains (those that do, named), the first few shown."""
    explained = f"known divergence{'s' if len(entries) > 1 else ''} {', '.join(repr(e.id) for e in entries)} explain{'s' if len(entries) == 1 else ''} the others"
    count = int(np.sum(unexplained))
    if unexplained.shape == ():
        return f"the result lies in no known divergence's region ({explained})"
    shape = broadcast_shape(inputs)
    elementwise = {name: np.broadcast_to(a, shape) for name, a in inputs.items() if np.ndim(a)} if unexplained.shape == shape else {}
    rows = []
    for index in list(zip(*np.nonzero(unexplained)))[:shown]:
        index = tuple(int(i) for i in index)
        at = {name: to_hex(a[index]) for name, a in elementwise.items()}
        error = f", {_ulps(float(errors[index]))} ULP" if errors is not None and np.shape(errors) == unexplained.shape else ""
        rows.append(f"[{', '.join(map(str, index))}] {' '.join(f'{k}={v}' for k, v in at.items())}{error}".strip())
    return f"{count} element{'s' if count != 1 else ''} past it lie in no known divergence's region: {'; '.join(rows)}" + (
        f"; and {count - shown} more" if count > shown else ""
    ) + f" ({explained})"


def _row_arrays(rows, shape) -> tuple[np.ndarray, np.ndarray]:
    """A relation's rows (index, a, b, d, within, ...) as arrays over ``shape``: the distances, and the mask of
    the rows that miss the relation."""
    d, missing = np.zeros(shape), np.zeros(shape, dtype=bool)
    for row in rows:
        d[row[0]] = row[3]
        missing[row[0]] = not row[4]
    return d, missing


def _number_or_none(value: float) -> float | None:
    """A record's float field: None for NaN (not measured), the value itself otherwise (inf included)."""
    return None if math.isnan(value) else value


def _within_message(outcome: Conditioning, tolerance) -> str:
    return (
        f"each of the {outcome.missing} element{'s' if outcome.missing != 1 else ''} past it lies within "
        f"{tolerance.condition_factor:g} × its condition-aware bound (largest error / bound {_ulps(outcome.ratio)}, "
        f"largest condition number {_ulps(outcome.condition)}): conditioned"
    )


def _beyond_message(outcome: Conditioning, tolerance) -> str:
    return (
        f"{outcome.beyond} of the {outcome.missing} element{'s' if outcome.missing != 1 else ''} past it "
        f"{'lie' if outcome.beyond != 1 else 'lies'} beyond {tolerance.condition_factor:g} × the condition-aware bound "
        f"(largest error / bound {_ulps(outcome.ratio)})"
    )


def _is_float(values: np.ndarray) -> bool:
    """A float array: None, strings, integers or booleans are no loss (bfloat16 is numpy kind V)."""
    return values.dtype.name in DTYPES or values.dtype.kind == "f"


def broadcast_shape(inputs) -> tuple[int, ...]:
    return np.broadcast_shapes(*(a.shape for a in inputs.values()))


EMPTY = "empty input: "  # starts the message of every result on an input without elements


def _is_empty(inputs) -> bool:
    return int(np.prod(broadcast_shape(inputs))) == 0


def _returned(values: np.ndarray) -> str:
    """What an API returned for an empty input: its value (a reduction) or its shape."""
    if values.shape == ():
        return to_hex(float(values)) if math.isnan(float(values)) else f"{to_hex(float(values))} ({float(values)!r})"
    return f"shape {values.shape}"


def _ulps(value: float) -> str:
    return "inf" if math.isinf(value) else ("nan" if math.isnan(value) else f"{value:.3g}")


def _check_expectation(literal, value: ReferenceValue, fmt: FloatFormat, reduction: str) -> None:
    problem = expectation_mismatch(literal, value.exact, fmt)  # the rule, and its message, live in conformance.verdicts
    if problem is not None:
        raise ExpectationError(f"the case's expect {reduction} {problem}")


@dataclass
class Plan:
    """Everything one framework's run needs: its APIs, the cases, the known divergences, the checks."""

    framework: Framework
    cases: list[Case]
    known: list[divergence_list.KnownDivergence]  # the entries that hold on this host
    checks: list[Check]
    runner: Runner
    elsewhere: list[divergence_list.KnownDivergence] = ()  # entries whose `when:` does not hold on this host
    numerics: dict | None = None  # this host's numerics record (conformance.numerics.probe), probed once
    spec: WorkerSpec | None = None  # plan()'s arguments: a worker process builds the same plan (conformance.isolation)

    judges_builtin: bool = False  # the cases are the project's own (cases/): its built-in catalogue is judged on them

    def unused_divergences(self) -> list[divergence_list.KnownDivergence]:
        """The judged entries whose scope (API, op, dtype, reduction, quantity) no planned check lies in."""
        return divergence_list.unused_scope(self.judged_divergences(), self.checks)

    def judged_divergences(self) -> list[divergence_list.KnownDivergence]:
        """The entries whose strictness a whole run judges: those of extra files always; the built-in ones, and an
        adapter's own (``Framework.known_divergences``), on the project's own cases (a run of other cases cannot
        tell a stale mechanism from one it does not reach)."""
        shipped = {str(path) for path in self.framework.known_divergences}
        return [e for e in self.known if self.judges_builtin or not (e.file.startswith(BUILTIN_PREFIX) or e.file in shipped)]

    def catalogue_problems(self, results) -> list[str]:
        """What a whole run finds wrong with the catalogue: each judged entry that explains nothing (stale, or an
        unexpected pass); see conformance.divergences.account."""
        return [a.problem() for a in divergence_list.account(self.judged_divergences(), results) if a.status != "explains"]

    def header(self) -> str:
        versions = ", ".join(f"{k} {v}" for k, v in sorted(self.framework.versions.items()))
        settings = ", ".join(f"{k}={v}" for k, v in sorted(self.framework.settings.items()))
        files = len({case.file for case in self.cases})
        return (
            f"bce-conformance: framework {self.framework.name} ({versions}{'; ' + settings if settings else ''}); "
            f"{len(self.cases)} cases in {files} files, {len(self.framework.apis)} APIs, {len(self.checks)} checks, "
            f"{len(self.known)} known divergences"
            + (
                f" ({len(self.elsewhere)} more that hold elsewhere, not applied: "
                + "; ".join(f"{e.id} {e.describe_scope()}" for e in self.elsewhere)
                + ")"
                if self.elsewhere
                else ""
            )
        )


def plan(
    framework_name: str | None,
    case_paths,
    divergence_files=(),
    adapter: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    numerics_record: dict | None = None,
    device: str = "cpu",
) -> Plan:
    """Load a framework (by name, or from an ``adapter`` spec ``module:object``) on its ``device``
    (``conformance.devices``), the cases and the known divergences; raises FrameworkUnavailable (AdapterError
    for a broken adapter, DeviceUnavailable for an absent device) or CaseError. ``timeout``: the seconds each
    framework call may take (0 or None: no limit). ``numerics_record``: this host's (conformance.numerics.probe),
    where the caller has it (a run's worker process gets the run's)."""
    case_paths, divergence_files = list(case_paths), list(divergence_files)
    cases = load_cases(case_paths)  # first: a bad case file is reported before any framework import
    framework = load_adapter(adapter, device) if adapter else load_framework(framework_name, device)
    # an entry with a `when:` applies only where this host's numerics environment satisfies it, one with
    # `versions:` only for the framework versions it names
    record = numerics.probe() if numerics_record is None else numerics_record
    catalogues = [*framework.known_divergences, *divergence_files]  # the adapter's own, then the run's
    known, elsewhere = divergence_list.applying(divergence_list.load(framework.name, catalogues), record, framework.versions)
    spec = WorkerSpec(
        framework_name, tuple(str(p) for p in case_paths), tuple(str(f) for f in divergence_files), adapter, timeout, record,
        device,
    )  # fmt: skip
    judges_builtin = [Path(p).resolve() for p in case_paths] == [Path(PROJECT_CASES).resolve()]
    return Plan(
        framework, cases, known, enumerate_checks(cases, framework.apis), Runner(framework, known, timeout, "" if device == "cpu" else framework.device), elsewhere, record, spec,
        judges_builtin,
    )
