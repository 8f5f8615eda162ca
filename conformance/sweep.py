"""Exhaustive float32 sweeps: every finite float32 logit (or a slice of the bit patterns) against targets 0
and 1 (0.5 as an option), through each of a framework's fused APIs and its two-step path, value and
gradient, judged against the correctly rounded reference: ``python -m conformance sweep``.

The patterns are cut into chunks, independent tasks (run in this process, on a Dask ``LocalCluster`` or on
a cluster at ``--scheduler``); each finished chunk's figures are written atomically to a file of its own,
so a killed sweep resumes from the chunks on disk. A chunk's figures are counts, maxima and a few worst
elements under a total order, each a function of the elements alone, so the merged results are the same
bytes however the sweep was chunked, scheduled or interrupted.

Per element, with R the correctly rounded reference (``sweep_kernel``: compiled, one e^-|x| for
both targets and quantities, its rare unsettled roundings by python-flint's balls, the rarer rest by mpmath): an
element whose result is R is correctly rounded, its error at most half an ULP (counted as 0.5: its exact error is
not computed, which is where the speed comes from); every other element is judged by ``verdicts.judge``'s rule
against the reference of those elements alone: at targets 0 and 1 by that rule compiled (``sweep_kernel.judged``,
``verdicts.interval_judgement``), ``verdicts.judge`` itself deciding what the float64 interval leaves open. Those
past the tolerance are measured as the runner measures a result's: against the API's documented variant, against
their condition-aware bounds (``conformance.conditioning``) and by the known-divergence catalogue's regions
(``conformance.divergences``). The verdict of a sweep's (API, target, quantity) applies the runner's order to the
whole sweep as one result (``verdicts.sweep_verdict``). Within a chunk, the reference at targets 0 and 1 is one
compiled pass (``sweep_kernel``), the judged elements' figures another (``sweep_kernel.tally``); numpy's
elementwise work (the reference at another target, the judging the compiled judge leaves open) runs on blocks of
a few thousand elements, so that its float64 temporaries stay in cache; the figures do not depend on the blocks
(a test). The regions are found by binary search (the chunk's magnitudes ascend in two runs)."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conformance import arb_reference, conditioning, fast_reference, memory, numerics, regions, sweep_kernel
from conformance import divergences as divergence_list
from conformance import reference as ref
from conformance.adapters import Api, Framework, load_framework
from conformance.dtypes import FORMATS, round_to_format, to_hex, ulp_error
from conformance.results import Result, ResultWriter, write_atomically
from conformance.results import _jsonable as jsonable
from conformance.runner import API_ERRORS
from conformance.variants import combine, describe
from conformance.verdicts import (
    Verdict,
    conditioning_of,
    exact_decimal,
    judge,
    sweep_verdict,
    tolerance_for,
    worst_first,
)

DTYPE = "float32"
FMT = FORMATS[DTYPE]
OPS = ("bce_with_logits", "sigmoid_bce")  # the fused loss and the two-step path
QUANTITIES = ("value", "grad")
PATTERNS = 1 << 32
CHUNK = 1 << 24  # patterns per chunk: 16.8 M elements a target (about a GiB of arrays in a worker)
# elements computed on at once within a chunk, so that the float64 temporaries stay in cache: the reference's
# (at a target other than 0 and 1), and (more numpy calls per element, so larger blocks) the judging's
BLOCK = 1 << 14
JUDGE_BLOCK = 1 << 16
KEEP_WORST = 8  # worst elements kept per (API, target, quantity)
# the histogram's upper edges in ULPs: [0, 0.5], (0.5, 1], (1, 2], ..., (2^20, inf]; NaN errors apart
ULP_EDGES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 4096.0, 2.0**20, math.inf)
BINADES = 2 * 255  # (sign, biased exponent 0..254) of the finite logits
# a LocalCluster worker's environment: one core's worth of threads each, for its framework's thread pool (OpenMP,
# MKL, TensorFlow's) and the reference kernel's (numba), so that the workers do not contend for the cores
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}
FORMAT = "bce-conformance-sweep-chunk"
FORMAT_VERSION = 1


class SweepError(Exception):
    """A sweep that cannot run as asked (a bad --bits, an unknown API); the message says why."""


# ---------------------------------------------------------------------------------------------
# what a sweep is: its patterns, targets, APIs and quantities (everything that decides its bytes)


@dataclass(frozen=True)
class Spec:
    framework: str
    start: int = 0
    stop: int = PATTERNS
    step: int = 1
    targets: tuple[float, ...] = (0.0, 1.0)
    apis: tuple[str, ...] = ()  # API names; empty: every API of OPS
    quantities: tuple[str, ...] = QUANTITIES

    @property
    def count(self) -> int:
        return len(range(self.start, self.stop, self.step))

    def key(self) -> str:
        """A digest of the spec and of the suite's version: a chunk file of another sweep is never reused."""
        from conformance import __version__

        text = json.dumps({**asdict(self), "suite": __version__}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def bits_text(self) -> str:
        return f"0x{self.start:08x}:0x{self.stop:08x}" + (f":{self.step}" if self.step != 1 else "")


def parse_bits(text: str) -> tuple[int, int, int]:
    """``START:STOP[:STEP]``: the float32 bit patterns START, START + STEP, ... below STOP (decimal or 0x hex,
    as a Python slice; STOP up to 2^32). The non-finite patterns among them are left out."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise SweepError(f"--bits {text!r}: START:STOP or START:STOP:STEP (bit patterns, decimal or 0x hex)")
    try:
        numbers = [int(part.strip(), 0) if part.strip() else None for part in parts]
    except ValueError:
        raise SweepError(f"--bits {text!r}: START, STOP and STEP are integers, decimal or 0x hex") from None
    start = 0 if numbers[0] is None else numbers[0]
    stop = PATTERNS if numbers[1] is None else numbers[1]
    step = 1 if len(numbers) < 3 or numbers[2] is None else numbers[2]
    if not 0 <= start < stop <= PATTERNS or step < 1:
        raise SweepError(f"--bits {text!r}: need 0 <= START < STOP <= 0x100000000 and STEP >= 1")
    return start, stop, step


def parse_targets(text: str) -> tuple[float, ...]:
    allowed = {"0": 0.0, "1": 1.0, "0.5": 0.5}
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or any(name not in allowed for name in names) or len(set(names)) < len(names):
        raise SweepError(f"--targets {text!r}: a comma-separated list of 0, 1 and 0.5, each once")
    return tuple(allowed[name] for name in names)


def chunk_ranges(spec: Spec, size: int = CHUNK) -> list[tuple[int, int]]:
    """The chunks, as ranges of the pattern index i (the pattern is start + i·step), in order."""
    if size < 1:
        raise SweepError(f"--chunk {size}: at least 1")
    return [(low, min(low + size, spec.count)) for low in range(0, spec.count, size)]


def patterns(spec: Spec, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """The finite patterns of the indices [low, high) and their float32 values."""
    bits = np.arange(spec.start + low * spec.step, spec.start + high * spec.step, spec.step, dtype=np.uint32)
    finite = (bits & 0x7F800000) != 0x7F800000
    if not finite.all():
        bits = bits[finite]
    return bits, bits.view(np.float32)


def case_name(target: float) -> str:
    return f"sweep-float32/target-{target:g}"


# the first pattern of each binade, in binade order (which is the patterns' order)
BINADE_STARTS = np.array([(b // 255) << 31 | (b % 255) << 23 for b in range(BINADES)], dtype=np.uint32)


def binade_counts(bits: np.ndarray) -> np.ndarray:
    """The patterns of each binade among ``bits`` (ascending): the binades are runs of them, found by binary search."""
    return np.diff(np.searchsorted(bits, BINADE_STARTS), append=bits.size)


# ---------------------------------------------------------------------------------------------
# one chunk (in a worker): the framework loaded once per process


_LOADED: dict[str, tuple[Framework, list]] = {}


def loaded(name: str) -> tuple[Framework, list]:
    """The framework and its known divergences (those holding on this host and versions), once per process;
    freed memory kept for the chunks (``memory.keep_freed_memory``)."""
    memory.keep_freed_memory()
    if name not in _LOADED:
        framework = load_framework(name)
        known, _ = divergence_list.applying(
            divergence_list.load(framework.name, framework.known_divergences), numerics.probe(), framework.versions
        )
        _LOADED[name] = (framework, known)
    return _LOADED[name]


def selected_apis(framework: Framework, names: tuple[str, ...]) -> list[Api]:
    # an axis_mean API's `none` result is its row means (Keras's axis=-1): the same loss as its elementwise
    # sibling, which the sweep judges, but not one value per logit
    apis = [api for api in framework.apis if api.op in OPS and DTYPE in api.dtypes and not api.axis_mean]
    if names:
        unknown = [name for name in names if name not in {api.name for api in apis}]
        if unknown:
            raise SweepError(
                f"--api {', '.join(unknown)}: not a float32 API of {framework.name} on logits; those are: "
                + ", ".join(api.name for api in apis)
            )
        apis = [api for api in apis if api.name in names]
    return apis


def blocks(size: int, block: int) -> list[tuple[int, int]]:
    """[start, stop) of the blocks of ``block`` elements that cover ``size``."""
    return [(low, min(low + block, size)) for low in range(0, size, block)]


def _terms(x: np.ndarray, target: float, gradient: bool) -> fast_reference.Terms:
    """The float64 terms of the loss (or gradient) at one target: the sweep's compiled kernel for targets 0 and 1
    (``sweep_kernel``), the general fast path's for 0.5."""
    if target in sweep_kernel.BINARY_TARGETS:
        return sweep_kernel.terms(x, target, gradient)
    inputs = {"logits": x, "target": np.full(x.shape, target, dtype=np.float32)}
    return fast_reference.logits_terms(inputs, None, gradient)


@dataclass
class Reference:
    """The reference of a (target, quantity) over a chunk: each element's correct rounding to float32, and the
    elements whose rounding mpmath settled (their indices, ascending, and exact values). The float64 terms
    are not kept: ``part`` evaluates them again on the few elements it is asked for."""

    target: float
    gradient: bool
    rounded: np.ndarray  # float32
    settled_at: np.ndarray
    settled_exact: np.ndarray  # object: the exact values (mpmath) of the elements at settled_at

    def settled_among(self, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of the ``selected`` elements (indices, ascending) mpmath settled, and for each its place among
        ``settled_at`` (meaningful where settled): both ascending, so by one binary search."""
        if not self.settled_at.size:
            return np.zeros(selected.size, dtype=bool), np.zeros(selected.size, dtype=np.intp)
        at = np.minimum(np.searchsorted(self.settled_at, selected), self.settled_at.size - 1)
        return self.settled_at[at] == selected, at

    def part(self, formula: str, part: dict[str, np.ndarray], selected: np.ndarray) -> ref.ReferenceValue:
        """The ``ReferenceValue`` of the ``selected`` elements (indices, ascending), whose inputs are ``part``:
        their terms evaluated on them alone (elementwise, so the same values), nothing by mpmath twice."""
        terms = _terms(part["logits"], self.target, self.gradient)
        known = np.empty(selected.size, dtype=object)
        known.fill(None)
        settled, at = self.settled_among(selected)
        at_part = np.flatnonzero(settled)
        known[at_part] = self.settled_exact[at[at_part]]
        approx = terms.approx
        approx[at_part] = np.nan
        return ref.fast_value(
            formula,
            part,
            "none",
            FMT,
            None,
            False,
            self.gradient,
            False,
            self.rounded[selected].astype(np.float64),
            approx,
            terms.bound,
            known_exact=known,
        )


def chunk_references(
    x: np.ndarray, targets: tuple[float, ...], quantities: tuple[str, ...]
) -> dict[tuple[float, str], Reference]:
    """The correctly rounded float32 loss and gradient (the ``quantities`` asked) at each logit and target: at
    targets 0 and 1, one compiled pass over the chunk (``sweep_kernel.roundings``: one e^-|x| serves both
    targets and both quantities); at another target, the general fast path's float64 terms and their settling
    block by block (``BLOCK``: the temporaries stay in cache); then the elements left unsettled (an exact value
    near a rounding boundary), by python-flint's balls (``arb_reference.roundings``), and the few they leave by
    the mpmath path."""
    size = x.size
    keys = [(target, quantity) for target in targets for quantity in quantities]
    binary = [key for key in keys if key[0] in sweep_kernel.BINARY_TARGETS]
    other = [key for key in keys if key[0] not in sweep_kernel.BINARY_TARGETS]
    rounded = {key: np.empty(size, dtype=np.float32) for key in other}
    unsettled = {key: np.empty(size, dtype=bool) for key in other}
    if binary:  # one compiled pass over the chunk for every binary (target, quantity)
        rows = sweep_kernel.roundings(x, [(target, quantity == "grad") for target, quantity in binary])
        for key, row in zip(binary, rows, strict=True):
            rounded[key], unsettled[key] = row, np.isnan(row)
    for low, high in blocks(size, BLOCK) if other else ():
        part = x[low:high]
        for target, quantity in other:
            terms = _terms(part, target, quantity == "grad")
            rounded_part, unsettled[target, quantity][low:high] = fast_reference.settle(terms, FMT)
            rounded[target, quantity][low:high] = rounded_part
    out = {}
    for target, quantity in keys:
        gradient = quantity == "grad"
        settled_at = np.flatnonzero(unsettled[target, quantity])
        if settled_at.size:  # by python-flint's balls where they settle it, by mpmath the rest
            balls = arb_reference.roundings(x[settled_at], target, gradient, FMT)
            by_ball = ~np.isnan(balls)
            rounded[target, quantity][settled_at[by_ball]] = balls[by_ball]
            settled_at = settled_at[~by_ball]
        settled_exact = np.empty(settled_at.size, dtype=object)
        if settled_at.size:
            inputs = {"logits": x[settled_at], "target": np.full(settled_at.size, target, dtype=np.float32)}
            settled = ref.reference("bce_with_logits", inputs, "none", FMT, gradient=gradient, fast=False)
            rounded[target, quantity][settled_at] = settled.rounded
            settled_exact[:] = list(settled.exact)
        out[target, quantity] = Reference(target, gradient, rounded[target, quantity], settled_at, settled_exact)
    return out


def reference_values(x: np.ndarray, target: float, gradient: bool) -> Reference:
    """The reference of one target and quantity (``chunk_references``)."""
    quantity = "grad" if gradient else "value"
    return chunk_references(x, (target,), (quantity,))[target, quantity]


@dataclass
class TargetContext:
    """What every (API, quantity) of one target in a chunk shares: the inputs as the APIs take them, each
    element's region, the counts and first patterns of the regions, the counts of the binades, and the
    known-divergence entries whose regions the inputs reach (by the entries concerned: ``touched``)."""

    inputs: dict[str, np.ndarray]
    target: float
    bits: np.ndarray
    binade_elements: np.ndarray
    where: np.ndarray
    region_elements: np.ndarray
    present: np.ndarray
    first: dict[int, int]  # region index -> its first pattern
    reached: dict[tuple, bool] = field(default_factory=dict)  # (entry id, its regions in scope) -> reached

    @classmethod
    def of(cls, x: np.ndarray, target: float, bits: np.ndarray, binade_elements, shared: dict) -> TargetContext:
        """The context of one target; its elements' regions are those of an earlier target of the chunk whose
        ``regions.target_masks`` are the same (``shared``, by those masks), else classified here."""
        y = np.float64(target)
        key = tuple(bool(mask) for mask in regions.target_masks(y, FMT))
        if key not in shared:
            shared[key] = _regions_of(x, y, bits)
        inputs = {"logits": x, "target": np.full(x.shape, target, dtype=np.float32)}
        return cls(inputs, target, bits, binade_elements, *shared[key])

    def touched(self, concerned) -> list[str]:
        """The ids of the ``concerned`` entries whose regions some element reaches (``divergences.explain``'s
        ``touched``), in their order, each found once per target (the sweep's quantities, value and grad, have
        one input each). The chunk's patterns ascend, so its logits are two monotone runs (the non-negative
        ones ascending, the negative ones descending): each region is looked up in each by binary search
        (``divergences.Region.reaches``), not evaluated on every element."""
        x = self.inputs["logits"]
        split = int(np.searchsorted(self.bits, np.uint32(0x80000000)))
        runs = [{"logits": x[:split], "target": self.target}, {"logits": x[split:][::-1], "target": self.target}]
        for entry, scoped in concerned:
            if (entry.id, scoped) not in self.reached:
                self.reached[entry.id, scoped] = any(region.reaches(run, "logits") for region in scoped for run in runs)
        return [entry.id for entry, scoped in concerned if self.reached[entry.id, scoped]]


def _regions_of(x: np.ndarray, y: np.float64, bits: np.ndarray) -> tuple:
    """Each element's region at the target ``y`` (``regions.classify``), the count of each region, the regions
    present and the first pattern of each. The chunk's patterns ascend, so its magnitudes |x| are two ascending
    runs (the non-negative logits, then the negative ones), and a region changes only at the magnitudes
    ``regions.breakpoints`` gives: each run is cut there by binary search and each piece classified by its first
    element (a test checks this against classifying every element)."""
    where = np.empty(x.shape, dtype=np.int8)
    region_elements = np.zeros(len(regions.REGIONS), dtype=np.int64)
    first: dict[int, int] = {}  # the first pattern of each region
    split = int(np.searchsorted(bits, np.uint32(0x80000000)))
    cuts = {0, split, x.size}
    for low, high in ((0, split), (split, x.size)):
        run = x[low:high]
        for point in regions.breakpoints("logits", FMT):  # the pieces below, at and above each breakpoint
            cuts.add(low + bisect.bisect_left(run, point, key=_magnitude))
            cuts.add(low + bisect.bisect_right(run, point, key=_magnitude))
    for start, stop in itertools.pairwise(sorted(cuts)):
        if stop > start:
            index = int(regions.classify("logits", x[start : start + 1], y, FMT)[0])
            where[start:stop] = index
            region_elements[index] += stop - start
            first.setdefault(index, int(bits[start]))
    return where, region_elements, np.flatnonzero(region_elements), first


def _magnitude(value: np.float32) -> float:
    return abs(float(value))


def run_chunk(spec: Spec, low: int, high: int) -> dict[str, Any]:
    """The figures of one chunk: for each (target, API, quantity), in order, its ``_judge`` record."""
    framework, known = loaded(spec.framework)
    apis = selected_apis(framework, spec.apis)
    bits, x = patterns(spec, low, high)
    binade_elements = binade_counts(bits)
    wanted = tuple(q for q in spec.quantities if any(q != "grad" or api.grad is not None for api in apis))
    references = chunk_references(x, spec.targets, wanted)
    records = []
    shared: dict = {}  # the elements' regions, by the targets' masks
    for target in spec.targets:
        context = TargetContext.of(x, target, bits, binade_elements, shared)
        for api in apis:
            for quantity in spec.quantities:
                if quantity == "grad" and api.grad is None:
                    records.append({"unsupported": api.why_unsupported(DTYPE, context.inputs, quantity)})
                    continue
                records.append(_judge(api, quantity, target, context, references[target, quantity], known))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": spec.key(),
        "low": low,
        "high": high,
        "elements": int(bits.size),
        "records": records,
    }


def timed_chunk(spec: Spec, low: int, high: int) -> tuple[dict[str, Any], float]:
    """``run_chunk`` and its seconds, measured where it ran (not in the queue); the time stays out of the file."""
    started = time.monotonic()
    data = run_chunk(spec, low, high)
    return data, time.monotonic() - started


def _judge(
    api: Api, quantity: str, target: float, context: TargetContext, reference: Reference, known
) -> dict[str, Any]:
    inputs, bits, where = context.inputs, context.bits, context.where
    gradient = quantity == "grad"
    tolerance = tolerance_for(DTYPE)
    function = api.grad if gradient else api.call
    rounded = reference.rounded
    try:
        got = np.asarray(function(dict(inputs), "none"))
    except API_ERRORS as exc:  # the framework's own error: this chunk's, on record (the merged verdict is `error`)
        text = str(exc).splitlines()[0] if str(exc) else ""
        return {"error": f"the call raised {type(exc).__name__}" + (f": {text}" if text else "")}
    if got.shape != rounded.shape:
        return {"error": f"returned shape {got.shape}, expected {rounded.shape}"}
    if got.dtype != np.float32:
        return {"error": f"returned {got.dtype} for float32 inputs (a silent change of dtype)"}
    candidates = sweep_kernel.differing(got, rounded)  # the elements not correctly rounded (NaN matches NaN)
    out: dict[str, Any] = {"elements": int(got.size), "correctly_rounded": int(got.size - candidates.size)}
    histogram = np.zeros(len(ULP_EDGES) + 1, dtype=np.int64)  # the last: NaN errors
    histogram[0] = out["correctly_rounded"]
    binade_elements = context.binade_elements
    binade_missed = np.zeros(BINADES, dtype=np.int64)
    binade_max = np.where(binade_elements > 0, 0.5, np.nan)  # a correctly rounded element counts as 0.5
    region_count = len(regions.REGIONS)
    region_elements, present = context.region_elements, context.present
    region_missed = np.zeros(region_count, dtype=np.int64)
    # a region's worst: (error, pattern); its first element's until a worse one is found (correctly rounded: 0.5)
    region_worst, region_bits = np.full(region_count, 0.5), np.zeros(region_count, dtype=np.int64)
    region_bits[present] = [context.first[int(index)] for index in present]
    out.update(
        missed=0,
        floor_accepted=0,
        worst=[],
        variant_misses=None,
        beyond=0,
        unexplained=0,
        explained={},
        in_regions=[],
        bound_ratio=None,
        condition=None,
        variant_max_ulp=None,
        unexplained_worst=[],
    )
    formula, two_step = ref.FORMULA_OF_OP[api.op], api.op == "sigmoid_bce"
    concerned = divergence_list.concerning(known, case_name(target), api.name, api.op, DTYPE, "none", quantity)
    if concerned:  # the entries whose region the sweep's input reaches (a catalogue's strictness)
        out["in_regions"] = context.touched(concerned)
    if api.variants:  # the documented variant over every element: acceptable needs all of them within it
        variant_ref = ref.reference(
            formula, inputs, "none", FMT, combine(api.variants), two_step=two_step, gradient=gradient
        )
        variant = judge(got.astype(np.float64), variant_ref, FMT, tolerance, keep=0)
        out["variant_misses"] = int(np.asarray(variant.missing).sum())
        out["variant_max_ulp"] = _number(variant.max_ulp)
    if candidates.size:
        part = {name: array[candidates] for name, array in inputs.items()}
        candidate_got = got[candidates]
        values = candidate_got.astype(np.float64)
        errors, missing, floor_accepted = _judged(part, candidate_got, values, reference, candidates, formula, gradient)
        cand_bits = bits[candidates]
        out["missed"] = int(missing.sum())
        out["floor_accepted"] = int(floor_accepted)
        worst = sweep_kernel.tally(
            errors, missing, cand_bits, where[candidates], np.asarray(ULP_EDGES), histogram, binade_max,
            binade_missed, region_missed, region_worst, region_bits, KEEP_WORST,
        )
        out["worst"] = [[int(cand_bits[i]), to_hex(float(values[i])), _number(errors[i]), bool(missing[i])] for i in worst]
        if missing.any():
            out.update(
                _past_tolerance(
                    api,
                    quantity,
                    formula,
                    two_step,
                    part,
                    values,
                    reference.rounded[candidates],
                    errors,
                    missing,
                    cand_bits,
                    tolerance,
                    concerned,
                )
            )
    out["histogram"] = histogram.tolist()
    out["binades"] = [
        [int(b), int(binade_elements[b]), int(binade_missed[b]), _number(binade_max[b])]
        for b in np.flatnonzero(binade_elements)
    ]
    out["regions"] = [
        [
            regions.REGIONS[i],
            int(region_elements[i]),
            int(region_missed[i]),
            float(region_worst[i]),
            int(region_bits[i]),
        ]
        for i in present
    ]
    return out


def _judged(
    part: dict, got: np.ndarray, values: np.ndarray, reference: Reference, candidates: np.ndarray, formula: str,
    gradient: bool,
) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """The errors in ULPs of the results ``got`` (float32; ``values``, the same as float64) of the ``candidates``
    (the elements not correctly rounded, whose inputs are ``part``), which of them miss the tolerance, and how many meet it through the
    absolute floor alone, as ``verdicts.judge`` measures them. At a target 0 or 1, the compiled judge
    (``sweep_kernel.judged``: the same rule) decides nearly all in one pass, and ``verdicts.judge`` the few it
    leaves open (an unsettled rounding, an error on the tolerance itself); at another target, ``verdicts.judge``
    all, a block at a time (elementwise, in cache). Each error near a histogram edge is then measured exactly
    (``_exact_on_edges``)."""
    tolerance = tolerance_for(DTYPE)
    settled, _ = reference.settled_among(candidates)  # their rounding (and exact value) mpmath gave: left open
    if reference.target in sweep_kernel.BINARY_TARGETS:
        errors, flags = sweep_kernel.judged(
            part["logits"], got, reference.rounded[candidates], settled, reference.target, gradient, tolerance,
            np.asarray(ULP_EDGES), EDGE_SLACK,
        )
    else:
        errors, flags = np.full(candidates.size, np.nan), np.full(candidates.size, sweep_kernel.OPEN, dtype=np.int8)
    missing = (flags & sweep_kernel.MISSED) != 0
    floor_accepted = int(np.count_nonzero(flags & sweep_kernel.FLOOR))
    near = (flags & sweep_kernel.NEAR_EDGE) != 0
    left_open = np.flatnonzero(flags & sweep_kernel.OPEN)
    for low, high in blocks(left_open.size, JUDGE_BLOCK):  # elementwise: judged a block at a time, in cache
        at = left_open[low:high]
        block = {name: array[at] for name, array in part.items()}
        judgement = judge(values[at], reference.part(formula, block, candidates[at]), FMT, tolerance, keep=0, listed=False)
        errors[at] = judgement.errors
        missing[at] = judgement.missing
        floor_accepted += judgement.floor_accepted
        near[at] = _near_edges(judgement.errors)
    _exact_on_edges(errors, values, part, reference.target, gradient, np.flatnonzero(near))
    return errors, missing, floor_accepted


EDGE_SLACK = 2.0**-19  # relative: wider than the judge's interval on an error (2^-20 ULP, or 2^-20 of it)


def _near_edges(errors: np.ndarray) -> np.ndarray:
    """Which errors lie so near a histogram edge (within ``EDGE_SLACK``, relative) that their bin would depend on
    the float64 evaluation (libm's, numpy's: the host's)."""
    with np.errstate(invalid="ignore", over="ignore"):
        low = np.searchsorted(ULP_EDGES, errors * (1 - EDGE_SLACK), side="left")
        high = np.searchsorted(ULP_EDGES, errors * (1 + EDGE_SLACK), side="left")
    return (low != high) & np.isfinite(errors)


def _exact_on_edges(errors: np.ndarray, values: np.ndarray, part: dict, target: float, gradient: bool, near) -> None:
    """The errors (in place) of the elements ``near`` (indices) a histogram edge (``_near_edges``), measured
    exactly: by python-flint's balls (``arb_reference.ulp_errors``), else by mpmath (``dtypes.ulp_error``). An
    error of exactly 1 ULP is in (0.5, 1] on every host."""
    measured = arb_reference.ulp_errors(part["logits"][near], target, gradient, values[near], FMT)
    proven = np.isfinite(measured)
    errors[near[proven]] = measured[proven]
    rest = near[~proven]
    for start, stop in blocks(rest.size, JUDGE_BLOCK):  # (the mpmath path takes a bounded number at once)
        at = rest[start:stop]
        inputs = {name: array[at] for name, array in part.items()}
        exact = ref.reference("bce_with_logits", inputs, "none", FMT, gradient=gradient, fast=False).exact
        errors[at] = [ulp_error(float(v), want, FMT) for v, want in zip(values[at], exact, strict=True)]


def _past_tolerance(
    api, quantity, formula, two_step, part, values, rounded, errors, missing, bits, tolerance, concerned
) -> dict:
    """The elements past the tolerance, as the runner measures them: their condition-aware bounds, then the
    known divergences whose regions hold those beyond their bounds."""
    subset = {name: array[missing] for name, array in part.items()}
    got = values[missing]
    missed_rounded = rounded[missing].astype(np.float64)
    missed_errors = errors[missing]
    everywhere = np.ones(got.shape, dtype=bool)
    bounds, conditions = np.empty(got.size), np.empty(got.size)
    for low, high in blocks(got.size, JUDGE_BLOCK):  # elementwise: a block at a time, in cache
        block = {name: array[low:high] for name, array in subset.items()}
        deviations = conditioning.result_deviations(
            formula, quantity, two_step, block, FMT, "none", False, everywhere[low:high], kept=False
        )
        bounds[low:high], conditions[low:high] = conditioning.bound_ulps(
            deviations, got[low:high], missed_rounded[low:high], FMT
        )
    outcome = conditioning_of(everywhere, missed_errors, bounds, conditions, tolerance)
    out: dict[str, Any] = {
        "beyond": int(outcome.beyond),
        "bound_ratio": _number(outcome.ratio),
        "condition": _number(outcome.condition),
    }
    beyond = np.asarray(outcome.beyond_elements, dtype=bool)
    unexplained = beyond
    if concerned and beyond.any():
        explanation = divergence_list.explain(concerned, subset, quantity, beyond, missed_errors)
        out["explained"] = {entry: jsonable(figures) for entry, figures in explanation.figures.items()}
        unexplained = np.asarray(explanation.unexplained, dtype=bool) & beyond
    out["unexplained"] = int(unexplained.sum())
    if unexplained.any():
        key = np.where(np.isnan(missed_errors), np.inf, missed_errors)
        chosen = np.flatnonzero(unexplained)
        chosen = chosen[worst_first(key[chosen], bits[missing][chosen], 3)]
        out["unexplained_worst"] = [[int(bits[missing][i]), _number(missed_errors[i])] for i in chosen]
    return out


def worst_element(bits: int, got: str, error, target: float, gradient: bool) -> dict:
    """A worst element as the results record it, its exact value computed now (by mpmath, alone)."""
    x = np.array([float32_of(bits)], dtype=np.float32)
    inputs = {"logits": x, "target": np.array([target], dtype=np.float32)}
    want = ref.reference("bce_with_logits", inputs, "none", FMT, gradient=gradient, fast=False).exact[0]
    return {
        "index": [int(bits)],
        "inputs": {"logits": to_hex(float(x[0])), "target": to_hex(target)},
        "got": got,
        "want": exact_decimal(want),
        "want_rounded": to_hex(round_to_format(want, FMT)),
        "ulp": error,
    }


def _number(value) -> float | str:
    """A float as the results files write it: "inf", "-inf" and "nan" as strings (JSON has no such numbers)."""
    return jsonable(float(value))


def float32_of(bits: int) -> float:
    """The float32 value of a bit pattern."""
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


# ---------------------------------------------------------------------------------------------
# the chunks on disk: written atomically, read back on a resume


def chunk_path(folder: Path, spec: Spec, low: int, high: int) -> Path:
    return folder / f"{spec.start + low * spec.step:09x}-{spec.start + (high - 1) * spec.step:09x}.json"


def finished(path: Path, spec: Spec, low: int, high: int) -> dict | None:
    """A chunk file of this sweep, whole (it was renamed into place), or None: absent, another sweep's, unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        return None
    if data.get("spec") != spec.key() or data.get("low") != low or data.get("high") != high:
        return None
    return data


def execute(
    spec: Spec, ranges, folder: Path, workers: int, scheduler: str | None, on_chunk: Callable[[dict, float], None]
) -> None:
    """Runs the chunks not yet on disk: in this process (``workers`` 0, no scheduler), on a Dask LocalCluster
    of ``workers`` processes (one thread each: the frameworks' own thread pools stay at one), or on the Dask
    cluster at ``scheduler``. Each result is written as it arrives, so a killed sweep keeps what finished."""
    pending = [
        (low, high) for low, high in ranges if finished(chunk_path(folder, spec, low, high), spec, low, high) is None
    ]
    if not pending:
        return
    if workers == 0 and scheduler is None:
        for low, high in pending:
            data, seconds = timed_chunk(spec, low, high)
            write_atomically(chunk_path(folder, spec, low, high), json.dumps(data, sort_keys=True) + "\n")
            on_chunk(data, seconds)
        return
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise SweepError(
            "--workers / --scheduler need Dask distributed: pip install 'bce-conformance[sweep]' (or --workers 0)"
        ) from None
    cluster = None
    if scheduler is None:
        cluster = LocalCluster(  # any free port for the dashboard: never a clash
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", env=ONE_THREAD
        )
    client = Client(scheduler if scheduler is not None else cluster)
    try:
        futures = [
            client.submit(timed_chunk, spec, low, high, pure=False, key=f"chunk-{spec.key()}-{low}")
            for low, high in pending
        ]
        for future in as_completed(futures):
            data, seconds = future.result()
            write_atomically(
                chunk_path(folder, spec, data["low"], data["high"]), json.dumps(data, sort_keys=True) + "\n"
            )
            on_chunk(data, seconds)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---------------------------------------------------------------------------------------------
# the merge: one result record per (API, target, quantity)


def merge(spec: Spec, framework: Framework, chunks: list[dict], known) -> list[Result]:
    """The sweep's results, from every chunk's figures (in chunk order): counts added, maxima taken, the worst
    elements the first KEEP_WORST of all under (error descending, pattern ascending)."""
    apis = selected_apis(framework, spec.apis)
    keys = [(api, target, quantity) for target in spec.targets for api in apis for quantity in spec.quantities]
    order = {entry.id: n for n, entry in enumerate(known)}
    results = []
    for position, (api, target, quantity) in enumerate(keys):
        parts = [chunk["records"][position] for chunk in chunks]
        results.append(_merged(spec, framework, api, target, quantity, parts, order))
    return results


def _merged(spec, framework, api, target, quantity, parts, order) -> Result:
    result = Result(
        case=case_name(target),
        framework=framework.name,
        api=api.name,
        op=api.op,
        dtype=DTYPE,
        reduction="none",
        quantity=quantity,
        verdict=Verdict.ERROR.value,
        file=f"sweep:{spec.bits_text()}",
        framework_versions=dict(framework.versions),
    )
    unsupported = [p["unsupported"] for p in parts if "unsupported" in p]
    if unsupported:
        result.verdict, result.message = Verdict.UNSUPPORTED.value, unsupported[0]
        return result
    errors = [p["error"] for p in parts if "error" in p]
    if errors:
        result.message = f"{errors[0]} (in {len(errors)} of {len(parts)} chunks)"
        return result
    total = {
        name: sum(p[name] for p in parts)
        for name in ("elements", "correctly_rounded", "missed", "floor_accepted", "beyond", "unexplained")
    }
    variant_misses = None if api.variants == () else sum(p["variant_misses"] for p in parts)
    histogram = np.sum([p["histogram"] for p in parts], axis=0).tolist() if parts else [0] * (len(ULP_EDGES) + 1)
    binades: dict[int, list] = {}
    for p in parts:
        for b, elements, missed, max_ulp in p["binades"]:
            entry = binades.setdefault(b, [0, 0, -math.inf])
            entry[0] += elements
            entry[1] += missed
            entry[2] = max(entry[2], float(max_ulp))
    region_rows: dict[str, list] = {}
    for p in parts:
        for name, elements, missed, max_ulp, bits in p["regions"]:
            row = region_rows.setdefault(name, [0, 0, None])
            row[0] += elements
            row[1] += missed
            candidate = (float(max_ulp), bits)
            if row[2] is None or (-candidate[0], candidate[1]) < (-row[2][0], row[2][1]):
                row[2] = candidate
    worst = sorted((w for p in parts for w in p["worst"]), key=lambda w: (-float(w[2]), w[0]))[:KEEP_WORST]
    tolerance = tolerance_for(DTYPE)
    max_ulp = float(worst[0][2]) if worst else 0.5
    result.max_ulp = max(max_ulp, 0.5) if total["elements"] else None
    result.median_ulp = _median_bin(histogram, total["elements"])
    result.floor_accepted = total["floor_accepted"]
    result.worst = [worst_element(bits, got, error, target, quantity == "grad") for bits, got, error, _ in worst]
    result.regions = {}
    for name in regions.REGIONS:
        if name in region_rows:
            elements, missed, (max_ulp_region, bits) = region_rows[name]
            x = float32_of(bits)
            result.regions[name] = {
                "elements": elements,
                "missed": missed,
                "max_ulp": max_ulp_region,
                "x": to_hex(x),
                "target": to_hex(target),
            }
            if max_ulp_region > tolerance.max_ulp and not missed:
                result.regions[name]["floor"] = True
    explained: dict[str, dict] = {}
    for p in parts:
        for entry, figures in p["explained"].items():
            explained[entry] = _merge_figures(explained.get(entry), figures)
    touched = sorted({e for p in parts for e in p["in_regions"]}, key=lambda e: order.get(e, len(order)))
    result.in_regions = touched
    result.explained = {e: explained[e] for e in sorted(explained, key=lambda e: order.get(e, len(order)))}
    ratios = [float(p["bound_ratio"]) for p in parts if p["bound_ratio"] is not None]
    conditions = [float(p["condition"]) for p in parts if p["condition"] is not None]
    result.bound_ratio = max(ratios) if ratios else None
    result.condition = max((c for c in conditions if not math.isnan(c)), default=None)
    variant_ulps = [float(p["variant_max_ulp"]) for p in parts if p["variant_max_ulp"] is not None]
    verdict = sweep_verdict(total["missed"], variant_misses, total["beyond"], total["unexplained"], bool(explained))
    result.verdict = verdict.value
    share = f"{total['correctly_rounded']} of {total['elements']} elements correctly rounded"
    past = (
        f"{total['missed']} past the {DTYPE} tolerance of {tolerance.max_ulp:g} ULP (absolute floor {tolerance.abs_floor:g}), "
        f"{total['beyond']} of them beyond {tolerance.condition_factor:g} × their condition-aware bound"
    )
    if verdict == Verdict.EXACT:
        result.message = f"{share}; none past the tolerance"
    elif verdict == Verdict.ACCEPTABLE:
        result.variant = describe(api.variants, api.op)
        result.variant_max_ulp = max(variant_ulps) if variant_ulps else None
        result.source = combine(api.variants).source
        result.message = f"matches the documented variant {result.variant} at every element; {share}; {past}"
    elif verdict == Verdict.CONDITIONED:
        result.message = f"{share}; {past}"
    else:
        result.message = f"{share}; {past}"
        if explained:
            ids = list(result.explained)
            result.message += "; explained by " + ", ".join(f"{e} ({result.explained[e]['elements']})" for e in ids)
            first = ids[0]
            result.divergence = first
        if total["unexplained"]:
            shown = sorted((w for p in parts for w in p["unexplained_worst"]), key=lambda w: (-float(w[1]), w[0]))[:3]
            listing = ", ".join(f"x = {to_hex(float32_of(b))} ({float(u):.3g} ULP)" for b, u in shown)
            result.message += f"; {total['unexplained']} in no known divergence's region, e.g. {listing}"
    if quantity == "value" and worst and verdict != Verdict.EXACT:
        first = result.worst[0]["inputs"]
        result.repro = api.repro({"input": repr([first["logits"]]), "target": repr([first["target"]])}, DTYPE, "none")
    result.sweep = {
        "bits": spec.bits_text(),
        "elements": total["elements"],
        "correctly_rounded": total["correctly_rounded"],
        "missed": total["missed"],
        "histogram": [{"to": _number(edge), "elements": int(n)} for edge, n in zip(ULP_EDGES, histogram)]
        + [{"to": "nan", "elements": int(histogram[-1])}],
        "binades": [_binade_row(b, *binades[b]) for b in sorted(binades)],
    }
    return result


def _merge_figures(old: dict | None, new: dict) -> dict:
    """An entry's figures over two parts: elements added, the largest error, the spans widened."""
    if old is None:
        return dict(new)
    out = dict(old)
    out["elements"] = old["elements"] + new["elements"]
    if "max_ulp" in new:
        out["max_ulp"] = _number(max(float(old.get("max_ulp", -math.inf)), float(new["max_ulp"])))
    for label in ("logit", "target"):
        spans = (old.get(label) or []) + (new.get(label) or [])
        if spans:
            negative = [s for s in spans if float(s[1]) < 0]
            rest = [s for s in spans if float(s[1]) >= 0]
            parts = [negative, rest] if label == "logit" else [spans]
            out[label] = [[min(float(s[0]) for s in part), max(float(s[1]) for s in part)] for part in parts if part]
        if new.get(f"{label}_nan"):
            out[f"{label}_nan"] = True
    return out


def _binade_row(b: int, elements: int, missed: int, max_ulp: float) -> dict:
    sign, exponent = divmod(b, 255)
    low = (sign << 31) | (exponent << 23)
    first, last = np.array([low, low | 0x7FFFFF], dtype=np.uint32).view(np.float32)
    return {
        "sign": "-" if sign else "+",
        "exponent": exponent - 127 if exponent else "subnormal",
        "from": to_hex(float(first)),
        "to": to_hex(float(last)),
        "elements": elements,
        "missed": missed,
        "max_ulp": _number(max_ulp),
    }


def _median_bin(histogram: list[int], elements: int) -> float | None:
    """The upper edge of the histogram bin holding the median element (an upper bound on the median error)."""
    if not elements:
        return None
    seen = 0
    for edge, count in zip(ULP_EDGES + (math.nan,), histogram):
        seen += count
        if 2 * seen >= elements:
            return edge
    return math.nan


# ---------------------------------------------------------------------------------------------
# the command


def sweep(
    spec: Spec,
    out: Path,
    name: str,
    chunk: int = CHUNK,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: str = "auto",
    stream=None,
) -> Path:
    """Runs (or resumes) a sweep and writes ``out/name.jsonl``: the environment record, then a result per
    (API, target, quantity). The chunks stay in ``out/name.chunks/`` for a resume."""
    from conformance.environment import describe as describe_environment

    stream = sys.stderr if stream is None else stream
    framework, known = loaded(spec.framework)
    selected_apis(framework, spec.apis)  # an unknown --api is an error before any work
    ranges = chunk_ranges(spec, chunk)
    folder = out / f"{name}.chunks"
    workers = (os.cpu_count() or 1) if workers is None else workers
    reporter = ChunkProgress(spec, ranges, folder, progress, stream)
    execute(spec, ranges, folder, workers, scheduler, reporter.done)
    reporter.close()
    chunks = []
    for low, high in ranges:
        data = finished(chunk_path(folder, spec, low, high), spec, low, high)
        if data is None:
            raise SweepError(f"chunk {low}:{high} of {name} is missing from {folder} after the sweep")
        chunks.append(data)
    results = merge(spec, framework, chunks, known)
    path = out / f"{name}.jsonl"
    writer = ResultWriter(path.with_name(path.name + ".partial"), describe_environment(framework), len(results))
    for result in results:
        writer.write(result)
    writer.close()
    os.replace(path.with_name(path.name + ".partial"), path)
    return path


class ChunkProgress:
    """A tqdm bar of elements with its ETA on a terminal; one line per finished chunk otherwise (stderr)."""

    def __init__(self, spec: Spec, ranges, folder: Path, mode: str, stream):
        self.stream = stream
        self.total = len(ranges)
        self.done_chunks = sum(
            finished(chunk_path(folder, spec, lo, hi), spec, lo, hi) is not None for lo, hi in ranges
        )
        self.started = time.monotonic()
        self.elements = 0
        self.ran = 0
        self.bar = None
        if mode == "auto":
            mode = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        if self.done_chunks:
            print(
                f"resuming: {self.done_chunks} of {self.total} chunks already on disk ({folder})",
                file=stream,
                flush=True,
            )
        if mode == "bar":
            try:
                from tqdm import tqdm
            except ImportError:
                self.mode = "lines"
            else:
                self.bar = tqdm(total=self.total, initial=self.done_chunks, unit="chunk", file=stream)

    def done(self, data: dict, seconds: float) -> None:
        self.done_chunks += 1
        self.ran += 1  # in this session: the ETA's rate (the resumed chunks took no time here)
        self.elements += data["elements"]
        if self.bar is not None:
            self.bar.update(1)
            return
        if self.mode == "none":
            return
        elapsed = time.monotonic() - self.started
        left = self.total - self.done_chunks
        eta = elapsed / self.ran * left
        print(
            f"chunk {data['low']}:{data['high']}: {data['elements']} logits in {seconds:.1f} s; "
            f"{self.done_chunks} of {self.total} chunks done, ETA {eta:.0f} s",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
