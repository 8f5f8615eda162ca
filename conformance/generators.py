"""Input generators of the case format: a tensor field written as a mapping instead of a literal.

    logits: {linspace: [-20, 20, 401]}               # exact: start + i·(stop - start)/(num - 1)
    logits: {logspace: [-30, 30, 61], signs: both}   # ±(the float64 nearest 10**e), e on a linspace
    logits: {all_finite: float16}                    # every finite float16, ascending, -0.0 and +0.0
    logits: {special: [smallest_subnormal, -largest_finite, sigmoid_saturation, nan]}   # per dtype
    logits: {random: {distribution: normal, shape: [1000], seed: 7, loc: 0, scale: 10}}

Each expands to exact values like a literal's (then rounded once to the dtype under test):
an object array of ``Fraction`` (linspace, where its points are not all float64 values), a
float64 array (every float64 is exact: all_finite, logspace, random, dyadic linspaces), or a
``PerDtype`` whose values depend on the dtype under test (special). Sizes are checked against
``max_elements()`` before anything is allocated.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache, lru_cache
from typing import Any, Callable

import jsonschema
import mpmath
import numpy as np

from conformance.dtypes import FORMATS, FloatFormat, cast, parse_hex_or_decimal, round_fraction, round_to_format, to_hex

MAX_ELEMENTS = 2**22  # the most elements one generated tensor (or a product's grid) may have
MAX_ELEMENTS_ENV = "CONFORMANCE_MAX_ELEMENTS"  # overrides MAX_ELEMENTS
MAX_DIMENSIONS = 32  # the most dimensions of a `random` shape (numpy allows 64)
GENERATORS = ("linspace", "logspace", "all_finite", "special", "random")
ALL_FINITE_DTYPES = ("float16", "bfloat16")
SIGNS = ("positive", "negative", "both")
DISTRIBUTIONS = {"normal": ("loc", "scale"), "logistic": ("loc", "scale"), "uniform": ("low", "high")}
DISTRIBUTION_DEFAULTS = {"loc": 0.0, "scale": 1.0, "low": 0.0, "high": 1.0}
SPECIAL_NAMES = (
    "smallest_subnormal",
    "smallest_normal",
    "largest_finite",
    "epsilon",
    "one_minus_epsilon",
    "sigmoid_saturation",
    "exp_overflow",
    "neg_zero",
    "zero",
    "inf",
    "neg_inf",
    "nan",
)
USAGE = {
    "linspace": "linspace: [start, stop, num]",
    "logspace": "logspace: [min_exp10, max_exp10, num], with optional signs: positive | negative | both",
    "all_finite": "all_finite: float16 | bfloat16",
    "special": f"special: a list of names ({', '.join(SPECIAL_NAMES)}, each also as -name)",
    "random": "random: {distribution: normal | logistic (loc, scale) | uniform (low, high), shape: [...], seed: N}",
}
LOGSPACE_PRECISION = 160  # bits of the mpmath evaluation of 10**e for a non-integer e


class GeneratorError(ValueError):
    """A generator that cannot be expanded; ``where`` is the path inside its mapping (("linspace", 2))."""

    def __init__(self, message: str, where: tuple = ()):
        super().__init__(message)
        self.message = message
        self.where = tuple(where)


def max_elements() -> int:
    """The size limit: ``MAX_ELEMENTS``, or the whole number in $CONFORMANCE_MAX_ELEMENTS."""
    text = os.environ.get(MAX_ELEMENTS_ENV, "").strip()
    if not text:
        return MAX_ELEMENTS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise GeneratorError(f"{MAX_ELEMENTS_ENV}={text!r} is not a positive whole number")
    return value


def over_limit(what: str, size: int, limit: int) -> str:
    return (
        f"{what} has {size} elements, over the limit of {limit} "
        f"(MAX_ELEMENTS; set {MAX_ELEMENTS_ENV} to change it)"
    )


# ---------------------------------------------------------------------------------------------
# Exact values whose rounding depends on the dtype, and the rounding of any exact values


class PerDtype:
    """Exact values that depend on the dtype under test (the `special` generator): ``resolve(fmt)``
    gives them for one dtype (computed once per dtype); ``shape`` is the same for every dtype."""

    def __init__(self, shape: tuple[int, ...], resolve: Callable[[FloatFormat], np.ndarray]):
        self.shape = tuple(shape)
        self._resolve = resolve
        self._cache: dict[str, np.ndarray] = {}

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def resolve(self, fmt: FloatFormat) -> np.ndarray:
        if fmt.name not in self._cache:
            values = self._resolve(fmt)
            if values.shape != self.shape:
                raise ValueError(f"resolved to shape {values.shape}, not {self.shape}")
            self._cache[fmt.name] = values
        return self._cache[fmt.name]

    def map(self, function: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...]) -> PerDtype:
        """The values transformed the same way for every dtype (``function`` gives ``shape``)."""
        return PerDtype(shape, lambda fmt: function(self.resolve(fmt)))

    def __repr__(self) -> str:
        return f"PerDtype(shape={self.shape})"


def resolve(values: np.ndarray | PerDtype, fmt: FloatFormat) -> np.ndarray:
    """The exact values of a tensor field for ``fmt``: an array as it is, a ``PerDtype`` resolved."""
    return values.resolve(fmt) if isinstance(values, PerDtype) else values


def round_float64(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Correctly round float64 values to ``fmt`` (nearest, ties to even, subnormals, overflow to ±inf),
    vectorised, as ``dtypes.round_to_format`` does one value at a time; an array of ``fmt``'s dtype.

    Each finite v is scaled by a power of two (exactly) so that one unit in the last place of ``fmt``
    at v becomes 1, rounded to an integer by ``np.rint`` (ties to even) and scaled back.
    """
    x = np.array(values, dtype=np.float64)  # a copy
    if fmt.precision >= 53 and fmt.emin <= -1022:
        return x.astype(fmt.numpy_dtype)
    finite = np.isfinite(x) & (x != 0)
    v = x[finite]
    _, e = np.frexp(v)  # |v| = m · 2**e, 0.5 <= m < 1: the leading bit is 2**(e - 1)
    quantum = np.maximum(e - 1, fmt.emin) - (fmt.precision - 1)
    n = np.rint(np.ldexp(v, -quantum))  # |scaled| < 2**precision: exact in float64
    with np.errstate(over="ignore"):
        rounded = np.ldexp(n, quantum)
    rounded[np.abs(rounded) > fmt.largest] = np.inf
    x[finite] = np.copysign(rounded, v)
    return x.astype(fmt.numpy_dtype)  # exact: every value is already representable


def round_exact(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Exact values (an object array of Fraction / float, or a float64 array) rounded once to ``fmt``.

    A broadcast array (a product's grid) is rounded along its distinct elements only; float64
    arrays take the vectorised path. The result is a new, writable, C-contiguous array.
    """
    array = np.asarray(values)
    index = tuple(slice(0, 1) if (s == 0 and n > 1) else slice(None) for s, n in zip(array.strides, array.shape))
    core = array[index] if index else array  # (a 0-d array indexed by () would give its element)
    if core.dtype == np.float64:
        rounded = round_float64(core, fmt)
    else:
        rounded = cast(core, fmt)
    if rounded.shape != array.shape:
        rounded = np.broadcast_to(rounded, array.shape)
    return np.array(rounded, copy=True, order="C")


# ---------------------------------------------------------------------------------------------
# Each dtype's named points


def positive_value(fmt: FloatFormat, k: int) -> Fraction:
    """The k-th non-negative finite value of ``fmt`` in ascending order (k = 0 is +0)."""
    bits = fmt.precision - 1
    exponent, mantissa = k >> bits, k & ((1 << bits) - 1)
    if exponent == 0:
        return Fraction(mantissa) * Fraction(2) ** (fmt.emin - bits)
    return Fraction((1 << bits) + mantissa) * Fraction(2) ** (fmt.emin + exponent - 1 - bits)


def positive_count(fmt: FloatFormat) -> int:
    """How many non-negative finite values ``fmt`` has (+0 included)."""
    return (fmt.emax - fmt.emin + 2) << (fmt.precision - 1)


def finite_count(fmt: FloatFormat) -> int:
    """How many finite values ``fmt`` has, -0.0 and +0.0 counted apart."""
    return 2 * positive_count(fmt)


def _settled(predicate: Callable[[Fraction, int], bool], x: Fraction, fmt: FloatFormat) -> bool:
    """``predicate(x, precision)`` where two precisions agree (Ziv's test), the precision growing."""
    precision = 8 * fmt.precision + 128
    while True:
        low, high = predicate(x, precision), predicate(x, 2 * precision)
        if low == high:
            return high
        precision *= 4


def _first_true(predicate: Callable[[Fraction, int], bool], fmt: FloatFormat) -> int:
    """The smallest k whose positive value satisfies the (monotone, false at 0) predicate."""
    low, high = 0, positive_count(fmt) - 1  # predicate false at low, true at high
    if not _settled(predicate, positive_value(fmt, high), fmt):
        raise ValueError(f"no {fmt.name} value satisfies the predicate")
    while high - low > 1:
        middle = (low + high) // 2
        if _settled(predicate, positive_value(fmt, middle), fmt):
            high = middle
        else:
            low = middle
    return high


def _mpf(x: Fraction) -> mpmath.mpf:
    return mpmath.mpf(x.numerator) / x.denominator  # exact: the denominator is a power of two


@cache
def sigmoid_saturation(dtype: str) -> float:
    """The smallest x of the dtype whose correctly rounded sigmoid(x) is 1 (float32: 0x1.154246p+4)."""
    fmt = FORMATS[dtype]

    def saturated(x: Fraction, precision: int) -> bool:
        with mpmath.workprec(precision):
            return round_to_format(1 / (1 + mpmath.exp(-_mpf(x))), fmt) == 1.0

    return float(positive_value(fmt, _first_true(saturated, fmt)))


@cache
def exp_overflow(dtype: str) -> float:
    """The largest x of the dtype whose correctly rounded exp(x) is finite (float32: 0x1.62e42ep+6)."""
    fmt = FORMATS[dtype]

    def overflows(x: Fraction, precision: int) -> bool:
        with mpmath.workprec(precision):
            return math.isinf(round_to_format(mpmath.exp(_mpf(x)), fmt))

    return float(positive_value(fmt, _first_true(overflows, fmt) - 1))


def special_value(name: str, fmt: FloatFormat) -> float:
    """The named point of ``fmt`` (a leading ``-`` negates it), as the float64 holding it exactly."""
    negative = name.startswith("-")
    base = name[1:] if negative else name
    values = {
        "smallest_subnormal": lambda: fmt.smallest_subnormal,
        "smallest_normal": lambda: fmt.smallest_normal,
        "largest_finite": lambda: fmt.largest,
        "epsilon": lambda: math.ldexp(1.0, 1 - fmt.precision),
        "one_minus_epsilon": lambda: 1.0 - math.ldexp(1.0, -fmt.precision),
        "sigmoid_saturation": lambda: sigmoid_saturation(fmt.name),
        "exp_overflow": lambda: exp_overflow(fmt.name),
        "neg_zero": lambda: -0.0,
        "zero": lambda: 0.0,
        "inf": lambda: math.inf,
        "neg_inf": lambda: -math.inf,
        "nan": lambda: math.nan,
    }
    if base not in values:
        raise GeneratorError(f"unknown special value {name!r} (known: {', '.join(SPECIAL_NAMES)}, each also as -name)")
    value = values[base]()
    return -value if negative else value


# ---------------------------------------------------------------------------------------------
# The generators


@dataclass(frozen=True)
class Generated:
    """One tensor field's generator: what was written, what it expands to (1-D but for `random`)."""

    kind: str  # the generator: linspace, logspace, all_finite, special, random
    spec: Any  # its mapping as written
    values: np.ndarray | PerDtype = field(repr=False)
    description: str = ""  # "all_finite float16", "linspace [-10, 10, 101]"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape


def _number(value: Any, where: tuple) -> Fraction | float:
    """A number as case files write them (YAML number, decimal or hex string), exactly."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise GeneratorError(f"{value!r} is not a number", where)
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value) if math.isfinite(value) else value
    try:
        return parse_hex_or_decimal(value)
    except (ValueError, ZeroDivisionError):
        raise GeneratorError(f"{value!r} is not a decimal or hexadecimal float", where) from None


def _finite(value: Any, where: tuple, what: str) -> Fraction:
    exact = _number(value, where)
    if isinstance(exact, float):
        if exact == 0.0:  # -0.0: as a bound, it is zero
            return Fraction(0)
        raise GeneratorError(f"{what} must be finite, not {value!r}", where)
    return exact


def _count(value: Any, where: tuple, limit: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise GeneratorError(f"num must be a whole number, not {value!r}", where)
    num = int(value)
    if num < 1:
        raise GeneratorError(f"num must be at least 1, not {num}", where)
    if num > limit:
        raise GeneratorError(over_limit(what, num, limit), where)
    return num


def _shown(value: Any) -> str:
    return str(value) if not isinstance(value, str) else value


def _object_array(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _power_of_two_exponent(value: Fraction) -> int | None:
    """s where value·2**s is an integer and the denominator is 2**s, else None."""
    den = value.denominator
    return den.bit_length() - 1 if den & (den - 1) == 0 else None


def linspace_exact(start: Fraction, stop: Fraction, num: int) -> np.ndarray:
    """num points, start + i·(stop - start)/(num - 1) exactly: a float64 array where every point is
    a float64 value (dyadic and narrow enough), else an object array of Fractions."""
    if num == 1:
        return _object_array([start])
    step = (stop - start) / (num - 1)
    s_start, s_step = _power_of_two_exponent(start), _power_of_two_exponent(step)
    if s_start is not None and s_step is not None:
        s = max(s_start, s_step)
        first, delta = int(start * 2**s), int(step * 2**s)
        last = first + delta * (num - 1)
        if max(abs(first), abs(last)) < 2**53 and s <= 1074:
            integers = first + delta * np.arange(num, dtype=np.int64)  # |each| < 2**53: exact in int64 and float64
            return np.ldexp(integers.astype(np.float64), -s)
    numerator, denominator = start.numerator * step.denominator, start.denominator * step.denominator
    increment = step.numerator * start.denominator
    return _object_array([Fraction(numerator + i * increment, denominator) for i in range(num)])


def _nearest_float64_power_of_ten(exponent: Fraction) -> float:
    """The float64 nearest 10**exponent (exactly for an integer exponent; else from mpmath at
    LOGSPACE_PRECISION bits, where 10**e is irrational and so never a tie)."""
    if exponent.denominator == 1 and abs(exponent) <= 400:
        return round_fraction(Fraction(10) ** int(exponent), FORMATS["float64"])
    with mpmath.workprec(LOGSPACE_PRECISION):
        power = mpmath.power(10, mpmath.mpf(exponent.numerator) / exponent.denominator)
        return round_to_format(power, FORMATS["float64"])


def _planned_size(kind: str, body: Any, spec: dict, limit: int) -> int:
    """How many elements the generator will make, checked before anything is allocated."""
    if kind == "linspace":
        return _count(body[2], (kind, 2), limit, "linspace")
    if kind == "logspace":
        num = _count(body[2], (kind, 2), limit, "logspace")
        return 2 * num if spec.get("signs", "positive") == "both" else num
    if kind == "all_finite":
        if body not in ALL_FINITE_DTYPES:
            raise GeneratorError(f"all_finite takes {' or '.join(ALL_FINITE_DTYPES)}, not {body!r}", (kind,))
        return finite_count(FORMATS[body])
    if kind == "special":
        return len(body)
    if kind == "random":
        shape = body.get("shape")
        if not isinstance(shape, list) or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in shape):
            raise GeneratorError(f"shape must be a list of non-negative whole numbers, not {shape!r}", (kind, "shape"))
        if len(shape) > MAX_DIMENSIONS:
            raise GeneratorError(f"shape has {len(shape)} dimensions, more than {MAX_DIMENSIONS}", (kind, "shape"))
        return math.prod(shape)
    raise GeneratorError(f"unknown generator {kind!r}")


def expand(spec: Any, limit: int | None = None) -> Generated:
    """The exact values of a generator mapping; ``GeneratorError`` saying where it is wrong.

    The size is checked against ``limit`` (default ``max_elements()``) before anything is made.
    """
    if not isinstance(spec, dict):
        raise GeneratorError(f"a generator is a mapping, not {spec!r}")
    kinds = [key for key in spec if key in GENERATORS]
    if len(kinds) != 1:
        raise GeneratorError(
            f"a generator mapping has exactly one of {', '.join(GENERATORS)}"
            + (f"; this one has {', '.join(kinds)}" if kinds else f"; this one has {', '.join(map(repr, spec)) or 'none'}")
        )
    kind = kinds[0]
    allowed = {kind, "signs"} if kind == "logspace" else {kind}
    extra = [key for key in spec if key not in allowed]
    if extra:
        raise GeneratorError(f"unknown key {extra[0]!r} in the {kind} generator ({USAGE[kind]})", (extra[0],))
    body = spec[kind]
    if kind in ("linspace", "logspace") and (not isinstance(body, list) or len(body) != 3):
        raise GeneratorError(f"{kind} takes three numbers ({USAGE[kind]}), not {body!r}", (kind,))
    if kind == "special" and (not isinstance(body, list) or not body):
        raise GeneratorError(f"special takes a non-empty list of names, not {body!r}", (kind,))
    if kind == "random" and not isinstance(body, dict):
        raise GeneratorError(f"random takes a mapping ({USAGE[kind]}), not {body!r}", (kind,))
    if limit is None:
        limit = max_elements()
    size = _planned_size(kind, body, spec, limit)
    if size > limit:
        raise GeneratorError(over_limit(kind, size, limit), (kind,))
    return {"linspace": _linspace, "logspace": _logspace, "all_finite": _all_finite, "special": _special, "random": _random}[kind](
        spec, body
    )


def _linspace(spec: dict, body: list) -> Generated:
    start = _finite(body[0], ("linspace", 0), "linspace start")
    stop = _finite(body[1], ("linspace", 1), "linspace stop")
    num = int(body[2])
    values = linspace_exact(start, stop, num)
    return Generated("linspace", spec, values, f"linspace [{_shown(body[0])}, {_shown(body[1])}, {num}]")


def _logspace(spec: dict, body: list) -> Generated:
    low = _finite(body[0], ("logspace", 0), "min_exp10")
    high = _finite(body[1], ("logspace", 1), "max_exp10")
    if low > high:
        raise GeneratorError(f"min_exp10 {_shown(body[0])} is greater than max_exp10 {_shown(body[1])}", ("logspace",))
    signs = spec.get("signs", "positive")
    if signs not in SIGNS:
        raise GeneratorError(f"signs must be one of {', '.join(SIGNS)}, not {signs!r}", ("signs",))
    num = int(body[2])
    exponents = linspace_exact(low, high, num)
    magnitudes = np.array([_nearest_float64_power_of_ten(Fraction(e)) for e in exponents], dtype=np.float64)
    if signs == "positive":
        values = magnitudes
    elif signs == "negative":
        values = -magnitudes[::-1]
    else:
        values = np.concatenate([-magnitudes[::-1][magnitudes[::-1] != 0], magnitudes])
    shown = f"logspace [{_shown(body[0])}, {_shown(body[1])}, {num}]" + (f", signs {signs}" if "signs" in spec else "")
    return Generated("logspace", spec, values, shown)


@cache
def _all_finite_values(dtype: str) -> np.ndarray:
    numpy_dtype = FORMATS[dtype].numpy_dtype
    positive = np.arange(0, 0x8000, dtype=np.uint16)  # +0 up to +inf and the NaNs, by bit pattern
    patterns = np.concatenate([(positive | 0x8000)[::-1], positive])  # -NaN ... -0, +0 ... +NaN
    with np.errstate(invalid="ignore"):
        values = patterns.view(numpy_dtype).astype(np.float64)
    values = values[np.isfinite(values)]
    values.flags.writeable = False
    return values


def all_finite(dtype: str) -> np.ndarray:
    """Every finite value of ``dtype`` (float16 or bfloat16) ascending, -0.0 then +0.0, as float64."""
    return _all_finite_values(dtype).copy()


def _all_finite(spec: dict, body: str) -> Generated:
    return Generated("all_finite", spec, _all_finite_values(body), f"all_finite {body}")


def _special(spec: dict, body: list) -> Generated:
    for index, name in enumerate(body):
        if not isinstance(name, str):
            raise GeneratorError(f"{name!r} is not the name of a special value", ("special", index))
        try:
            special_value(name, FORMATS["float64"])
        except GeneratorError as exc:
            raise GeneratorError(exc.message, ("special", index)) from None
    names = tuple(body)
    values = PerDtype((len(names),), lambda fmt: np.array([special_value(n, fmt) for n in names], dtype=np.float64))
    return Generated("special", spec, values, f"special [{', '.join(names)}]")


def _random(spec: dict, body: dict) -> Generated:
    distribution = body.get("distribution")
    if not isinstance(distribution, str) or distribution not in DISTRIBUTIONS:
        raise GeneratorError(
            f"distribution must be one of {', '.join(DISTRIBUTIONS)}, not {distribution!r}", ("random", "distribution")
        )
    parameters = DISTRIBUTIONS[distribution]
    for key in body:
        if key not in ("distribution", "shape", "seed", *parameters):
            raise GeneratorError(
                f"unknown key {key!r} in a random {distribution} generator (it takes {', '.join(parameters)})", ("random", key)
            )
    seed = body.get("seed")
    if seed is None:
        raise GeneratorError("random needs a seed (a whole number >= 0): the draws must be reproducible", ("random",))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GeneratorError(f"seed must be a whole number >= 0, not {seed!r}", ("random", "seed"))
    values = {}
    for key in parameters:
        if key not in body:
            values[key] = DISTRIBUTION_DEFAULTS[key]
            continue
        try:
            values[key] = float(_finite(body[key], ("random", key), key))
        except OverflowError:
            raise GeneratorError(f"{key} {_shown(body[key])} is beyond float64", ("random", key)) from None
    if "scale" in values and not values["scale"] > 0:
        raise GeneratorError(f"scale must be positive, not {_shown(body['scale'])}", ("random", "scale"))
    if "low" in values and values["low"] > values["high"]:
        raise GeneratorError(f"low {values['low']!r} is greater than high {values['high']!r}", ("random", "low"))
    shape = tuple(body["shape"])
    rng = np.random.default_rng(seed)
    first, second = (values[key] for key in parameters)
    try:
        with np.errstate(over="ignore"):
            draws = getattr(rng, distribution)(first, second, size=shape).astype(np.float64)
    except (OverflowError, ValueError) as exc:  # uniform: high - low must be a finite float64
        raise GeneratorError(f"random {distribution}({first!r}, {second!r}) cannot be drawn in float64: {exc}", ("random",)) from None
    arguments = ", ".join(f"{key}={_shown(body.get(key, DISTRIBUTION_DEFAULTS[key]))}" for key in parameters)
    return Generated("random", spec, draws, f"random {distribution}({arguments}), seed {seed}, shape {list(shape)}")


# ---------------------------------------------------------------------------------------------
# The schema's view: which generator a mapping means, and what is wrong with it


def schema_problems(instance: Any, schema: dict) -> list[tuple[list, str]]:
    """(path inside the mapping, message) for each way ``instance`` fails its generator's schema."""
    if not isinstance(instance, dict):
        return [([], f"{instance!r} is not a generator mapping")]
    kinds = [key for key in instance if key in GENERATORS]
    if len(kinds) != 1:
        written = ", ".join(map(repr, instance)) or "nothing"
        what = f"has {', '.join(kinds)}" if kinds else f"has {written}"
        return [([], f"a generator mapping has exactly one of {', '.join(GENERATORS)}; this one {what}")]
    kind = kinds[0]
    definitions = schema["definitions"]
    target, prefix, usage = {"$ref": f"#/definitions/{kind}"}, [], USAGE[kind]
    body = instance[kind]
    if kind == "random" and isinstance(body, dict) and not [k for k in instance if k != kind]:
        distribution = body.get("distribution")
        if not isinstance(distribution, str) or distribution not in DISTRIBUTIONS:
            where = ["random", "distribution"] if "distribution" in body else ["random"]
            return [(where, f"random needs a distribution: one of {', '.join(DISTRIBUTIONS)}, not {distribution!r}")]
        target, prefix, instance = {"$ref": f"#/definitions/random_{distribution}"}, [kind], body
        parameters = ", ".join(DISTRIBUTIONS[distribution])
        usage = f"random {distribution} takes distribution, shape, seed, and optionally {parameters}"
    validator = SchemaValidator({**target, "definitions": definitions})
    out = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        location = prefix + list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            unknown = [key for key in error.instance if key not in known]
            out.append((location + [unknown[0]], f"unknown key {unknown[0]!r} in the {kind} generator ({usage})"))
        elif error.validator == "enum" and kind == "special":
            out.append((location, f"unknown special value {error.instance!r} (known: {', '.join(SPECIAL_NAMES)}, each also as -name)"))
        else:
            out.append((location, f"{error.message} ({usage})"))
    return out or [([], f"not a valid {kind} generator ({usage})")]


@lru_cache(maxsize=64)
def _ecma_regex(pattern: str) -> re.Pattern:
    """A schema ``pattern`` for Python's re with JSON Schema's (ECMA 262) meaning of ``$``: the end of
    the string only. Python's ``$`` also matches before a final newline, so ``^[a-z]+$`` would take
    ``"blog\\n"``; each ``$`` outside a character class becomes ``\\Z``."""
    out, in_class, index = [], False, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index:index + 2])
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append("\\Z" if char == "$" and not in_class else char)
        index += 1
    return re.compile("".join(out))


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# The case schema's validator: Draft 7, its `pattern`s read as JSON Schema means them (see _ecma_regex)
SchemaValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _pattern})


# ---------------------------------------------------------------------------------------------
# Descriptions, for `python -m conformance explain`


def short(value: float) -> str:
    """A value as its shortest repr, without a trailing .0 (-65504, 6.1e-05, nan, -inf)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def summary(values: np.ndarray, shown: int = 4) -> list[str]:
    """Lines describing a long 1-D array of a dtype's values: count and range, first and last few in hex."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    finite = flat[~np.isnan(flat)]
    nans = flat.size - finite.size
    words = f"{flat.size} values"
    if finite.size:
        words += f" from {short(finite.min())} to {short(finite.max())}"
    if nans:
        words += f", {nans} NaN"
    lines = [words]
    if flat.size <= 2 * shown + 2:
        lines.append(f"values: {[to_hex(v) for v in flat]}")
    else:
        lines.append(f"first {shown}: {[to_hex(v) for v in flat[:shown]]}")
        lines.append(f"last {shown}: {[to_hex(v) for v in flat[-shown:]]}")
    return lines
