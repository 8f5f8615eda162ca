"""``careful``: binary cross-entropy computed as carefully as one can in the dtype under test, and mutants of it.

A third-party adapter (docs/adapters.md), the subject of tests/test_mutants.py and benchmarks/mutants.py:

    python -m conformance run --adapter tests/subjects/careful.py:load --cases cases
    python -m conformance run --adapter tests/subjects/careful.py:load_clamp_logits_88 --cases cases

Every step computes in the dtype under test on ``conformance.adapters.rounded.xp``, whose exp, log, log1p and
sum are correctly rounded to the array's dtype; every other step (+, -, ×, ÷, max, abs, where) is an IEEE 754
operation in the dtype, which numpy rounds correctly for float16 and ml_dtypes for bfloat16 (each op through
float32, whose 24 bits are at least 2p + 2 for p = 11 and 8, so the double rounding is innocuous). The sigmoid
and the mean are correctly rounded too (``correctly_rounded_sigmoid``, ``correctly_rounded_mean``). So each
result is one value IEEE 754 defines, the same bits on any host, and the suite's verdicts on it are fixed.

The formulas avoid every cancellation that is not the problem's own (conformance.reference states what is
computed; this module only computes it in the dtype):

- loss on logits: w·(q·y·softplus(-x) + (1-y)·softplus(x)), softplus(t) = max(t, 0) + log1p(exp(-|t|)), a
  sum of non-negative terms (reference.bce_with_logits_term);
- loss on probabilities: w·(q·y·(-log p) + (1-y)·(-log1p(-p))) (reference.bce_term);
- two-step: the correctly rounded sigmoid p = σ(x), then the loss on probabilities; its gradient through p
  with the sigmoid's backward p·(1 - p) taken from p, as autodiff does (reference.variant_grad_term), each
  quotient scaled by it before dividing (no 1/p overflow for a subnormal p);
- gradient on logits, w·((1-y)·σ(x) - q·y·σ(-x)) (reference.bce_with_logits_grad): for q = 1, σ(x) - y,
  written in the form whose operands are exact or small: (1 - y) - σ(-x) for x > 1, σ(x) - y for x < -1,
  and (σ(x) - 1/2) - (y - 1/2) between, σ(x) - 1/2 = -expm1(-x)/(2·(1 + exp(-x))) with Kahan's expm1 from
  exp and log; a hard target takes one correctly rounded sigmoid (σ(x), or -σ(-x));
- gradient on probabilities, w·((1-y)/(1-p) - q·y/p) (reference.bce_grad): for a soft target inside (0, 1)
  w·(p - y)/(p·(1 - p)), which does not cancel where p is near y;
- gradients with respect to the target (reference.bce_with_logits_target_grad, bce_target_grad): -w·x on
  logits for q = 1, w·((q - 1)·softplus(-x) - x) otherwise; w·(log1p(-p) - q·log p) on probabilities, as
  w·log1p((1 - 2p)/p) for p in [1/4, 3/4] (1 - 2p is exact there);
- label smoothing as Keras's: y' = y·(1 - ls) + ls/2 in the dtype, and 1 - y' as (1 - y)·(1 - ls) + ls/2
  (the same smoothing, without the cancellation of 1 - y'); the target gradient times (1 - ls);
- reductions: the sum and the mean, each correctly rounded (the exact sum, or the exact sum over n, rounded
  once); the gradient of the mean divided by n, which need not be a value of the dtype (1e6 is no float16):
  in float64, where it is exact, then rounded to the dtype.

Special values as conformance/reference.py has them: a zero coefficient silences an infinite log (reference
._times: 0·log 0 = 0), a zero weight does not (w·inf is NaN there too), NaN in any input gives NaN, so does a
probability outside [0, 1] (reference.bce_term, bce_grad, bce_target_grad), and ±inf logits give the limits.

Mutants: ``MUTANTS`` names single-bug variants, each a subclass of ``Careful`` that overrides one of its
steps; ``mutant(name)`` loads one, as does the module attribute ``load_<name with _ for ->``. The API on
probabilities alone (op `bce`) has steps of its own, ``probabilities_terms`` and ``probabilities_loss`` (the
same computation as the two-step path's), so that a mutant can break that API and leave the two-step path
right, as a framework whose loss on probabilities has no two-step path here would be.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from conformance import __version__, fast_reference
from conformance.adapters import Api, Framework
from conformance.adapters import numpy as numpy_adapter
from conformance.adapters.rounded import xp
from conformance.dtypes import FORMATS, FloatFormat, round_fraction
from conformance.reference import sigmoid as exact_sigmoid
from conformance.reference import ziv_round

NAME = "careful"
SPEC = "tests/subjects/careful.py"  # the adapter spec's file, from the repository root (the reproducers use it)


def _format(dtype) -> FloatFormat:
    for fmt in FORMATS.values():
        if np.dtype(dtype) == fmt.numpy_dtype:
            return fmt
    raise TypeError(f"the careful subject computes in {', '.join(FORMATS)}, not {dtype}")


def correctly_rounded_sigmoid(values: np.ndarray) -> np.ndarray:
    """σ(x) of each element, correctly rounded to the elements' dtype: for up to 24 bits numpy's float64 value
    with its error bound settles most elements (fast_reference.settle), the rest, and every float64 element,
    take mpmath (reference.ziv_round) as rounded.correctly_rounded does for exp."""
    values = np.asarray(values)
    fmt = _format(values.dtype)
    x = values.astype(np.float64).ravel()
    out = np.full(x.shape, np.nan)
    pending = np.arange(x.size)
    if fmt.precision <= fast_reference.MAX_PRECISION and x.size:
        settled, unsettled = fast_reference.settle(fast_reference.sigmoid_terms(x), fmt)
        out[~unsettled] = settled[~unsettled]
        pending = pending[unsettled]
    for index in pending:
        out[index] = ziv_round(exact_sigmoid, x[index], fmt)
    return out.reshape(values.shape).astype(values.dtype)


class _Memo:
    """Results of the correctly rounded functions on large arrays, kept by content: a whole-library run calls
    them on the same arrays many times (mean, sum and their relation; every mutant whose bug is elsewhere),
    and each float64 element costs an mpmath evaluation. Same bits as a fresh call; bounded in memory."""

    MIN_ELEMENTS = 4096
    MAX_BYTES = 1 << 29

    def __init__(self):
        self.entries: OrderedDict = OrderedDict()
        self.size = 0

    def __call__(self, name: str, function, values) -> np.ndarray:
        values = np.asarray(values)
        if values.size < self.MIN_ELEMENTS:
            return np.asarray(function(values))
        data = np.ascontiguousarray(values)
        key = (name, data.dtype.str, data.shape, hashlib.blake2b(data.view(np.uint8), digest_size=16).digest())
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key].copy()
        result = np.asarray(function(data))
        self.entries[key] = result.copy()
        self.size += result.nbytes
        while self.size > self.MAX_BYTES and len(self.entries) > 1:
            _, dropped = self.entries.popitem(last=False)
            self.size -= dropped.nbytes
        return result


_memo = _Memo()


def correctly_rounded_mean(values: np.ndarray) -> np.ndarray:
    """The exact sum of the elements over n, rounded once to their dtype (0-d; NaN for no elements).

    Not ``xp.mean``, which rounds the sum to the dtype first and then divides: a float16 sum past 65504 is inf
    there (scale.yaml's million-float16, whose exact mean is 1.75), where numpy's own float16 mean, through
    float32, is not."""
    values = np.asarray(values)
    fmt = _format(values.dtype)
    x = values.astype(np.float64).ravel()
    infinite = x[np.isinf(x)]
    if x.size == 0 or np.isnan(x).any() or (infinite.size and (infinite != infinite[0]).any()):
        mean = math.nan  # no elements, a NaN, or inf + -inf
    elif infinite.size:
        mean = float(infinite[0])
    else:
        mean = round_fraction(sum(map(Fraction, x.tolist()), Fraction(0)) / x.size, fmt)
    return np.asarray(mean).astype(values.dtype)


CORRECTLY_ROUNDED = {"sigmoid": correctly_rounded_sigmoid, "mean": correctly_rounded_mean}


def cr(name: str, values) -> np.ndarray:
    """``name`` of the values correctly rounded to their dtype: xp's exp, log, log1p and sum, and this module's
    sigmoid and mean."""
    return _memo(name, CORRECTLY_ROUNDED.get(name) or getattr(xp, name), values)


@dataclass
class Operands:
    """One call's inputs, broadcast to one shape and cast to the working dtype, with what every step shares."""

    first: np.ndarray  # the logit, or the probability (for the two-step op, the logit)
    y: np.ndarray  # the target, smoothed
    not_y: np.ndarray  # 1 - y, smoothed
    positive: np.ndarray  # the coefficient of the positive term, q·y
    negative: np.ndarray  # the coefficient of the negative term, 1 - y
    weight: np.ndarray | None
    pos_weight: np.ndarray | None
    keep: np.ndarray | None  # 1 - ls in the dtype, where the case has label smoothing
    invalid: np.ndarray  # NaN results: a NaN input, or a probability outside [0, 1]
    shape: tuple[int, ...]
    dtype: np.dtype  # the dtype under test, which the results have
    work: np.dtype  # the dtype computed in (the dtype under test, but for a mutant)


class Careful:
    """The correct subject. Each step is a method, so that a mutant differs from it by overriding one."""

    # ---- inputs ------------------------------------------------------------------------------

    def working_dtype(self, dtype: np.dtype) -> np.dtype:
        return dtype

    def logits_in(self, x: np.ndarray) -> np.ndarray:
        return x

    def probability(self, p: np.ndarray) -> np.ndarray:
        """The probability the loss on probabilities takes (the input, or the two-step op's sigmoid)."""
        return p

    def smoothed(self, y: np.ndarray, ls: float | None, work: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """(y', 1 - y'): Keras's y·(1 - ls) + ls/2 (keras/src/losses/losses.py :: binary_crossentropy; 1 - ls and
        ls/2 from the Python float, then the dtype), and its complement (1 - y)·(1 - ls) + ls/2, the same value
        without the cancellation of 1 - y' next to y' = 1."""
        one = np.ones((), work)
        if ls is None:
            return y, one - y
        keep, half = work.type(1.0 - ls), work.type(ls / 2)
        return y * keep + half, (one - y) * keep + half

    def coefficients(self, y, not_y, q) -> tuple[np.ndarray, np.ndarray]:
        """(positive, negative): q·y and 1 - y, torch's pos_weight form (reference.bce_with_logits_term)."""
        return (y if q is None else q * y), not_y

    def operands(self, op: str, inputs: dict[str, np.ndarray]) -> Operands:
        first_name = "probs" if op == "bce" else "logits"
        dtype = np.asarray(inputs[first_name]).dtype
        work = np.dtype(self.working_dtype(dtype))
        present = {n: np.asarray(inputs[n]) for n in (first_name, "target", "weight", "pos_weight") if n in inputs}
        shape = np.broadcast_shapes(*(a.shape for a in present.values()))
        arrays = {n: np.broadcast_to(a.astype(work), shape) for n, a in present.items()}
        first, y = arrays[first_name], arrays["target"]
        w, q = arrays.get("weight"), arrays.get("pos_weight")
        invalid = np.zeros(shape, dtype=bool)
        for array in arrays.values():
            invalid |= np.isnan(array)
        if op == "bce":
            invalid |= (first < 0) | (first > 1)  # NaN outside p ∈ [0, 1] (reference.bce_term)
            first = self.probability(first)
        else:
            first = self.logits_in(first)
        ls = float(inputs["label_smoothing"]) if "label_smoothing" in inputs else None
        y, not_y = self.smoothed(y, ls, work)
        positive, negative = self.coefficients(y, not_y, q)
        keep = None if ls is None else work.type(1.0 - ls)
        return Operands(first, y, not_y, positive, negative, w, q, keep, invalid, shape, dtype, work)

    # ---- elementary steps --------------------------------------------------------------------

    def times(self, coefficient, value):
        """coefficient · value, where a zero coefficient silences an infinite value (reference._times)."""
        return np.where(coefficient == 0, np.zeros((), np.asarray(value).dtype), coefficient * value)

    def sigmoid(self, t):
        return cr("sigmoid", t)

    def softplus(self, t):
        """log(1 + e^t) = max(t, 0) + log1p(exp(-|t|)): no overflow, and exp(-|t|) <= 1 keeps log1p's digits."""
        zero = np.zeros((), t.dtype)
        return np.maximum(t, zero) + cr("log1p", cr("exp", -np.abs(t)))

    def log_not_p(self, p):
        """log(1 - p), as log1p(-p): correctly rounded where 1 - p would round."""
        return cr("log1p", -p)

    def half_offset(self, x):
        """σ(x) - 1/2 = -expm1(-x) / (2·(1 + exp(-x))) for |x| <= 1 (0 elsewhere: not used there), with Kahan's
        expm1(t) = (u - 1)·(t / log u), u = exp(t): u - 1 is exact, and t / log u makes up for u's rounding."""
        one, two = np.ones((), x.dtype), np.full((), 2, x.dtype)
        t = -np.where(np.abs(x) <= one, x, np.zeros((), x.dtype))
        u = cr("exp", t)
        u_minus_1 = u - one
        expm1 = np.where(u == one, t, np.where(u_minus_1 == -one, -one, u_minus_1 * (t / cr("log", u))))
        return -expm1 / (two * (one + u))

    # ---- the loss ------------------------------------------------------------------------------

    def logits_value_terms(self, x, positive, negative):
        return self.times(positive, self.softplus(-x)) + self.times(negative, self.softplus(x))

    def probs_value_terms(self, p, positive, negative):
        return self.times(positive, -cr("log", p)) + self.times(negative, -self.log_not_p(p))

    def probabilities_terms(self, p, positive, negative):
        """The terms of the API on probabilities alone (op `bce`): ``probs_value_terms``, as the two-step path's.
        A step of its own for the mutants of that API (see ``probabilities_loss``)."""
        return self.probs_value_terms(p, positive, negative)

    def adjust_value(self, terms):
        return terms

    def reduce_value(self, terms, reduction: str):
        if reduction == "sum":
            return cr("sum", terms)
        if reduction == "mean":
            return cr("mean", terms)
        return terms

    def probabilities_loss(self, terms, reduction: str):
        """What the API on probabilities alone (op `bce`, not the two-step path) returns from its weighted terms:
        their reduction, as every API's. A step of its own so that a mutant can break that API alone, as a
        framework whose probability loss has no two-step path in the suite (Keras's on torch or JAX)."""
        return self.reduce_value(terms, reduction)

    # ---- gradients -----------------------------------------------------------------------------

    def logits_grad_terms(self, x, y, not_y, positive, q):
        """(1 - y)·σ(x) - q·y·σ(-x) (reference.bce_with_logits_grad), without the weight."""
        one, half = np.ones((), x.dtype), np.full((), 0.5, x.dtype)
        s_pos, s_neg = self.sigmoid(x), self.sigmoid(-x)
        # for q = 1 it is σ(x) - y: in each range of x the form whose operands are exact or small
        middle = self.half_offset(x) - (y - half)  # y - 1/2 is exact for y in [1/4, 1]
        careful = np.where(x > one, not_y - s_neg, np.where(x < -one, s_pos - y, middle))
        careful = np.where(y == 0, s_pos, np.where(y == 1, -s_neg, careful))
        if q is None:
            return careful
        general = self.times(not_y, s_pos) - self.times(positive, s_neg)
        return np.where(q == 1, careful, general)

    def probs_grad_terms(self, p, y, not_y, positive, q):
        """(1 - y)/(1 - p) - q·y/p (reference.bce_grad), without the weight; 1/0 = inf, silenced by a zero
        coefficient. For a soft target, p inside (0, 1) and q = 1: (p - y)/(p·(1 - p)), which does not cancel
        where p is near y (the two terms do)."""
        one = np.ones((), p.dtype)
        two_terms = self.times(not_y, one / (one - p)) - self.times(positive, one / p)
        soft = (p > 0) & (p < 1) & (y != 0) & (y != 1)
        if q is not None:
            soft &= q == 1
        return np.where(soft, (p - y) / (p * (one - p)), two_terms)

    def sigmoid_backward(self, p):
        """The sigmoid's derivative as autodiff takes it: p·(1 - p) of its rounded output."""
        return p * (np.ones((), p.dtype) - p)

    def two_step_grad_terms(self, p, y, not_y, positive, q):
        """d/dx of the loss on p = σ(x) (rounded): ``probs_grad_terms`` times the sigmoid's backward c, as autodiff
        chains them, with c taken into each quotient before the division (c/p rather than c·(1/p)), so that 1/p
        of a subnormal p cannot overflow where the product is about 1; for a soft target (p - y)·(c/d), d the
        same rounding of p·(1 - p) as c. A zero c silences an infinite gradient (reference.variant_grad_term)."""
        one = np.ones((), p.dtype)
        c = self.sigmoid_backward(p)
        two_terms = self.times(not_y, c / (one - p)) - self.times(positive, c / p)
        soft = (p > 0) & (p < 1) & (y != 0) & (y != 1)
        if q is not None:
            soft &= q == 1
        g = np.where(soft, (p - y) * (c / (p * (one - p))), two_terms)
        return np.where(c == 0, np.zeros((), p.dtype), g)

    def weigh(self, terms, w, quantity: str):
        """w · terms for the loss (`value`), its gradient (`grad`) or its target gradient (`grad_target`)."""
        return terms if w is None else w * terms

    def reduce_grad(self, gradient, reduction: str, n: int):
        """The gradient of the reduced loss: of the mean, each element over n (in float64, where n is exact,
        rounded once to the dtype); of the sum and of `none` (the sum of the losses), the elements as they are."""
        if reduction != "mean" or n == 0:
            return gradient
        return (np.asarray(gradient, dtype=np.float64) / n).astype(gradient.dtype)

    # ---- target gradients ----------------------------------------------------------------------

    def logits_target_grad_terms(self, x, q):
        """q·softplus(-x) - softplus(x) (reference.bce_with_logits_target_grad): exactly -x for q = 1, and
        (q - 1)·softplus(-x) - x for finite x (softplus(x) - softplus(-x) = x), which does not cancel as
        q·softplus(-x) - softplus(x) does for q near 1; at ±inf the two softplus terms as they are."""
        if q is None:
            return -x
        one = np.ones((), x.dtype)
        sp_neg, sp_pos = self.softplus(-x), self.softplus(x)
        finite = (q - one) * sp_neg - x
        infinite = self.times(q, sp_neg) - sp_pos
        return np.where(q == 1, -x, np.where(np.isfinite(x), finite, infinite))

    def probs_target_grad_terms(self, p, q):
        """log(1 - p) - q·log p (reference.bce_target_grad); for q = 1 and p in [1/4, 3/4], where the two logs
        cancel, log1p((1 - 2p)/p): 2p is exact and 1 - 2p too (Sterbenz)."""
        one, two = np.ones((), p.dtype), np.full((), 2, p.dtype)
        log_p = cr("log", p)
        if q is not None:
            return self.log_not_p(p) - self.times(q, log_p)
        middle = cr("log1p", (one - two * p) / p)
        central = (p >= np.full((), 0.25, p.dtype)) & (p <= np.full((), 0.75, p.dtype))
        return np.where(central, middle, self.log_not_p(p) - log_p)

    # ---- the API calls -------------------------------------------------------------------------

    def _finish(self, values, o: Operands) -> np.ndarray:
        return np.asarray(values).astype(o.dtype).reshape(() if np.ndim(values) == 0 else o.shape)

    def _nan(self, values, o: Operands):
        return np.where(o.invalid, np.full((), np.nan, o.work), values)

    def _probability(self, op: str, o: Operands):
        """The probability the loss on probabilities sees: the input, or the two-step op's rounded sigmoid."""
        return self.probability(self.sigmoid(o.first)) if op == "sigmoid_bce" else o.first

    def value(self, op: str, inputs, reduction: str) -> np.ndarray:
        with np.errstate(all="ignore"):
            o = self.operands(op, inputs)
            if op == "bce_with_logits":
                terms = self.logits_value_terms(o.first, o.positive, o.negative)
            elif op == "bce":
                terms = self.probabilities_terms(o.first, o.positive, o.negative)
            else:
                terms = self.probs_value_terms(self._probability(op, o), o.positive, o.negative)
            terms = self.adjust_value(self._nan(self.weigh(terms, o.weight, "value"), o))
            reduce = self.probabilities_loss if op == "bce" else self.reduce_value
            return self._finish(reduce(terms, reduction), o)

    def grad(self, op: str, inputs, reduction: str) -> np.ndarray:
        with np.errstate(all="ignore"):
            o = self.operands(op, inputs)
            if op == "bce_with_logits":
                g = self.logits_grad_terms(o.first, o.y, o.not_y, o.positive, o.pos_weight)
            elif op == "sigmoid_bce":
                g = self.two_step_grad_terms(self._probability(op, o), o.y, o.not_y, o.positive, o.pos_weight)
            else:
                g = self.probs_grad_terms(o.first, o.y, o.not_y, o.positive, o.pos_weight)
            g = self._nan(self.weigh(g, o.weight, "grad"), o)
            return self._finish(self.reduce_grad(g, reduction, int(np.prod(o.shape))), o)

    def grad_target(self, op: str, inputs, reduction: str) -> np.ndarray:
        with np.errstate(all="ignore"):
            o = self.operands(op, inputs)
            if op == "bce_with_logits":
                g = self.logits_target_grad_terms(o.first, o.pos_weight)
            else:
                g = self.probs_target_grad_terms(self._probability(op, o), o.pos_weight)
            g = self.weigh(g, o.weight, "grad_target")
            if o.keep is not None:  # dy'/dy = 1 - ls
                g = g * o.keep
            g = self._nan(g, o)
            return self._finish(self.reduce_grad(g, reduction, int(np.prod(o.shape))), o)


# ---------------------------------------------------------------------------------------------
# the mutants: each overrides one step of Careful with a bug seen in real code


class ClampLogits88(Careful):
    def logits_in(self, x):
        bound = x.dtype.type(88)
        return np.clip(x, -bound, bound)  # "avoid exp overflow": clamps the input, not exp's argument


class NaiveLogSigmoid(Careful):
    def logits_value_terms(self, x, positive, negative):
        p = self.sigmoid(x)
        return self.times(positive, -cr("log", p)) + self.times(negative, -cr("log", np.ones((), p.dtype) - p))


class Float64InFloat32(Careful):
    def working_dtype(self, dtype):
        return np.dtype(np.float32) if dtype == np.float64 else dtype


class Bias64Ulp(Careful):
    def adjust_value(self, terms):
        return terms * terms.dtype.type(1 + 64 * 2.0 ** (1 - _format(terms.dtype).precision))


class MeanOverNMinus1(Careful):
    def reduce_value(self, terms, reduction):
        if reduction == "mean":
            return cr("sum", terms) / terms.dtype.type(terms.size - 1)  # Bessel's n - 1, from a variance
        return super().reduce_value(terms, reduction)


class SumForMean(Careful):
    def reduce_value(self, terms, reduction):
        return super().reduce_value(terms, "sum" if reduction == "mean" else reduction)


class RunningSum(Careful):
    def reduce_value(self, terms, reduction):
        if reduction == "none":
            return terms
        # one accumulator in the dtype, element after element: it stalls once the sum dwarfs the terms
        total = np.add.accumulate(terms.ravel())[-1] if terms.size else terms.dtype.type(0)
        if reduction == "sum":
            return total
        return total / terms.dtype.type(terms.size) if terms.size else terms.dtype.type(np.nan)


class LogitsGradSign(Careful):
    def logits_grad_terms(self, x, y, not_y, positive, q):
        return -super().logits_grad_terms(x, y, not_y, positive, q)  # y - σ(x): d/dx of the log-likelihood


class GradIgnoresWeight(Careful):
    def weigh(self, terms, w, quantity):
        return terms if quantity == "grad" else super().weigh(terms, w, quantity)


class PosWeightOnNegative(Careful):
    def coefficients(self, y, not_y, q):
        return y, (not_y if q is None else q * not_y)


class SmoothingAddsLs(Careful):
    def smoothed(self, y, ls, work):
        if ls is None:
            return super().smoothed(y, ls, work)
        keep = work.type(1.0 - ls)
        return y * keep + work.type(ls), (np.ones((), work) - y) * keep  # + ls, not + ls/2


class SoftplusOverflow(Careful):
    def softplus(self, t):
        return cr("log", np.ones((), t.dtype) + cr("exp", t))  # log(1 + exp(t)): exp overflows, 1 + tiny is 1


class SoftplusThreshold20(Careful):
    def softplus(self, t):
        return np.where(t > t.dtype.type(20), t, super().softplus(t))  # torch's softplus threshold: t past 20


class MeanGradNotDivided(Careful):
    def reduce_grad(self, gradient, reduction, n):
        return gradient


class TargetGradSign(Careful):
    def logits_target_grad_terms(self, x, q):
        return -super().logits_target_grad_terms(x, q)


class ProbClip(Careful):
    def probability(self, p):
        eps = p.dtype.type(1e-7)  # Keras's epsilon, undeclared: no variant stands for it
        return np.clip(p, eps, np.ones((), p.dtype) - eps)


class SigmoidInFloat16(Careful):
    def sigmoid(self, t):
        return cr("sigmoid", np.asarray(t).astype(np.float16)).astype(np.asarray(t).dtype)


class LogOfOneMinusP(Careful):
    def log_not_p(self, p):
        return cr("log", np.ones((), p.dtype) - p)


class ZeroTimesInf(Careful):
    def times(self, coefficient, value):
        return coefficient * value  # IEEE 0·inf = NaN where the loss's limit is 0·log 0 = 0


class TwoStepNoChain(Careful):
    def sigmoid_backward(self, p):
        return np.ones((), p.dtype)  # the two-step gradient stops at d/dp: the sigmoid's backward left out


# the API on probabilities alone (op `bce`): bugs of its reduction that only a long input shows, and a NaN
# silenced; the two-step path and the loss on logits stay correct


class ProbsTailDropped(Careful):
    BLOCK = 4096

    def probabilities_loss(self, terms, reduction):
        # a blocked reduction that forgets the last, partial block of a long input
        if reduction != "none" and terms.size > self.BLOCK:
            terms = terms.ravel().copy()
            terms[terms.size - terms.size % self.BLOCK :] = 0  # the sum of the whole blocks (over n for the mean)
        return super().probabilities_loss(terms, reduction)


class ProbsRunningFloat32Sum(Careful):
    def probabilities_loss(self, terms, reduction):
        if reduction == "none" or terms.size == 0:
            return super().probabilities_loss(terms, reduction)
        # one accumulator, element after element: float32 (float64 for float64), then rounded to the dtype
        accumulator = np.promote_types(terms.dtype, np.float32)
        total = np.add.accumulate(terms.ravel().astype(accumulator))[-1]
        if reduction == "mean":
            total = total / accumulator.type(terms.size)
        return np.asarray(total).astype(terms.dtype)


class ProbsMeanTimesReciprocal(Careful):
    def probabilities_loss(self, terms, reduction):
        if reduction != "mean" or terms.size == 0:
            return super().probabilities_loss(terms, reduction)
        return cr("sum", terms) * terms.dtype.type(1.0 / terms.size)  # 1/n rounded to the dtype: sum·(1/n)


class ProbsLogOfOneMinusP(Careful):
    def probabilities_terms(self, p, positive, negative):
        one = np.ones((), p.dtype)
        return self.times(positive, -cr("log", p)) + self.times(negative, -cr("log", one - p))  # not log1p(-p)


class ProbsNanToZero(Careful):
    def probabilities_loss(self, terms, reduction):
        # "no NaN in the loss": np.nan_to_num(loss, nan=0.0), infinities kept
        return super().probabilities_loss(np.where(np.isnan(terms), np.zeros((), terms.dtype), terms), reduction)


# name -> (the subclass, one line saying what is wrong)
MUTANTS: dict[str, tuple[type[Careful], str]] = {
    "clamp-logits-88": (ClampLogits88, "logits clamped to [-88, 88] before the loss (a clamp for exp's argument)"),
    "naive-log-sigmoid": (NaiveLogSigmoid, "the loss on logits as -(y·log σ(x) + (1-y)·log(1 - σ(x))): log 0"),
    "float64-in-float32": (Float64InFloat32, "float64 inputs computed in float32 and returned as float64"),
    "bias-64-ulp": (Bias64Ulp, "every loss term multiplied by 1 + 64·eps: a relative bias of 64 ULP"),
    "mean-over-n-minus-1": (MeanOverNMinus1, "the mean loss divided by n - 1"),
    "sum-for-mean": (SumForMean, "the sum returned where the mean is asked"),
    "running-sum": (RunningSum, "mean and sum accumulated element by element in the dtype (stalls on large inputs)"),
    "logits-grad-sign": (LogitsGradSign, "the logits gradient with its sign flipped, y - σ(x)"),
    "grad-ignores-weight": (GradIgnoresWeight, "the weight left out of the gradient"),
    "pos-weight-on-negative": (PosWeightOnNegative, "pos_weight multiplies the negative term (1-y)·softplus(x)"),
    "smoothing-adds-ls": (SmoothingAddsLs, "label smoothing y·(1 - ls) + ls instead of + ls/2"),
    "softplus-overflow": (SoftplusOverflow, "softplus(t) as log(1 + exp(t)): overflows, and loses e^t below 0"),
    "softplus-threshold-20": (SoftplusThreshold20, "softplus(t) = t for t > 20, torch's threshold, short of float64's"),
    "mean-grad-not-divided": (MeanGradNotDivided, "the gradient of the mean not divided by n"),
    "target-grad-sign": (TargetGradSign, "the logits loss's target gradient with its sign flipped"),
    "prob-clip-1e-7": (ProbClip, "p clipped to [1e-7, 1 - 1e-7] without declaring the prob_clip variant"),
    "sigmoid-in-float16": (SigmoidInFloat16, "the sigmoid computed in float16 whatever the dtype"),
    "log-of-one-minus-p": (LogOfOneMinusP, "log(1 - p) instead of log1p(-p): 1 - p rounds for small p"),
    "zero-times-inf": (ZeroTimesInf, "no zero-coefficient rule: 0·log 0 is NaN, not 0"),
    "two-step-no-chain": (TwoStepNoChain, "the two-step gradient without the sigmoid's backward p·(1 - p)"),
    "probs-tail-dropped": (
        ProbsTailDropped,
        "the loss on probabilities reduced in blocks of 4096 that drop the last, partial block of a longer input",
    ),
    "probs-running-float32-sum": (
        ProbsRunningFloat32Sum,
        "the loss on probabilities summed element by element into one float32 (float64) accumulator, not pairwise",
    ),
    "probs-mean-times-reciprocal": (
        ProbsMeanTimesReciprocal,
        "the mean loss on probabilities as sum·(1/n), 1/n rounded to the dtype (subnormal in float16 past 2**14)",
    ),
    "probs-log-of-one-minus-p": (
        ProbsLogOfOneMinusP,
        "the loss on probabilities with log(1 - p) instead of log1p(-p) (the two-step path keeps log1p)",
    ),
    "probs-nan-to-zero": (ProbsNanToZero, "the loss on probabilities with NaN replaced by 0 (a nan_to_num)"),
}


# ---------------------------------------------------------------------------------------------
# the adapter


API_NAMES = {
    "bce": f"{NAME}.bce",
    "bce_with_logits": f"{NAME}.bce_with_logits",
    "sigmoid_bce": f"{NAME}.sigmoid+{NAME}.bce",
}


def _loader_name(mutant_name: str | None) -> str:
    return "load" if mutant_name is None else "load_" + mutant_name.replace("-", "_")


def _repro(op: str, loader: str):
    """One line of Python: this module's API called on the element's hex floats (from the repository root)."""

    def repro(args: dict[str, str], dtype: str, reduction: str) -> str:
        cast = "ml_dtypes.bfloat16" if dtype == "bfloat16" else f"np.{dtype}"
        first = "probs" if op == "bce" else "logits"
        fields = [f"{first!r}: t({args['input']})", f"'target': t({args['target']})"]
        fields += [f"{name!r}: t({args[name]})" for name in ("weight", "pos_weight") if name in args]
        if "label_smoothing" in args:
            ls = float.fromhex(ast.literal_eval(args["label_smoothing"])[0])
            fields.append(f"'label_smoothing': np.array({ls!r})")
        return (
            "import numpy as np, ml_dtypes; from conformance.adapters import load_adapter; "
            f"t = lambda v: np.array([float.fromhex(h) for h in v]).astype({cast}); "
            f"api = next(a for a in load_adapter({SPEC + ':' + loader!r}).apis if a.name == {API_NAMES[op]!r}); "
            f"print(np.asarray(api.call({{{', '.join(fields)}}}, {reduction!r})).tolist())"
        )

    return repro


def framework(subject: Careful, mutant_name: str | None = None) -> Framework:
    name = NAME if mutant_name is None else f"{NAME}-{mutant_name}"
    loader = _loader_name(mutant_name)
    apis = [
        Api(
            name=API_NAMES[op],
            framework=name,
            op=op,
            call=functools.partial(subject.value, op),
            grad=functools.partial(subject.grad, op),
            grad_target=functools.partial(subject.grad_target, op),
            reduced_by="the exact mean / sum of the terms, rounded once (correctly_rounded_mean, rounded.xp.sum)",
            repro=_repro(op, loader),
        )
        for op in ("bce_with_logits", "sigmoid_bce", "bce")
    ]
    settings = {"rounding": "exp, log, log1p, sigmoid, sum and mean correctly rounded; the rest IEEE 754 in the dtype"}
    if mutant_name is not None:
        settings["mutant"] = f"{mutant_name}: {MUTANTS[mutant_name][1]}"
    versions = {"bce-conformance": __version__}
    return Framework(name=name, versions=versions, apis=apis, settings=settings, multiply=numpy_adapter.multiply)


def load() -> Framework:
    """The correct subject."""
    return framework(Careful())


def mutant(name: str) -> Framework:
    """The mutant ``name`` of ``MUTANTS``."""
    if name not in MUTANTS:
        raise ValueError(f"unknown mutant {name!r} (known: {', '.join(MUTANTS)})")
    return framework(MUTANTS[name][0](), name)


# one zero-argument loader per mutant, for --adapter tests/subjects/careful.py:load_<name with _ for ->
for _name in MUTANTS:
    globals()[_loader_name(_name)] = functools.partial(mutant, _name)
del _name
