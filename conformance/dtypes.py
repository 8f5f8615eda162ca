"""Floating-point formats under test: exact conversion, correct rounding and ULPs.

Every value the suite handles is a binary float, so it is held exactly as a
``fractions.Fraction`` (or an mpmath ``mpf``) and rounded to a format with integer
arithmetic only: one rounding, ties to even, subnormals and overflow included.
"""

from __future__ import annotations

import decimal
import math
import re
from dataclasses import dataclass
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-754 style binary format: ``precision`` bits of significand (implicit bit included)."""

    name: str
    precision: int
    emin: int  # exponent of the smallest normal number
    emax: int  # exponent of the largest finite number
    numpy_dtype: np.dtype

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.precision + 1)

    @property
    def smallest_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @property
    def largest(self) -> float:
        return math.ldexp(2.0 - math.ldexp(1.0, 1 - self.precision), self.emax)


FORMATS: dict[str, FloatFormat] = {
    "float16": FloatFormat("float16", 11, -14, 15, np.dtype(np.float16)),
    "bfloat16": FloatFormat("bfloat16", 8, -126, 127, np.dtype(ml_dtypes.bfloat16)),
    "float32": FloatFormat("float32", 24, -126, 127, np.dtype(np.float32)),
    "float64": FloatFormat("float64", 53, -1022, 1023, np.dtype(np.float64)),
}
DTYPES = tuple(FORMATS)


def get_format(name: str) -> FloatFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r} (known: {', '.join(DTYPES)})") from None


Exact = Fraction | float  # a float stands for itself only when it is ±inf or NaN


def binade(value: Fraction | mpmath.mpf) -> int:
    """The exponent e with 2**e <= |value| < 2**(e+1) of a finite nonzero value, exactly: an mpf's from its
    own exponent and bit count (never through the context's precision, which would round 1 - 2**-300 to 1)."""
    if isinstance(value, mpmath.mpf):
        _, _, exp, bc = value._mpf_
        return int(exp) + int(bc) - 1
    num, den = abs(value.numerator), value.denominator
    e = num.bit_length() - den.bit_length()
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    return e


def quantum_exponent(e, fmt: FloatFormat):
    """The exponent of one unit in the last place of ``fmt`` in the binade 2**e (an int, or an array of
    them): the spacing of the format there, the subnormal spacing below the normal range. The one
    definition of the ULP (``ulp``, ``fast_reference.ulp_of``) and of the rounding quantum."""
    if isinstance(e, np.ndarray):
        return np.maximum(e, fmt.emin) - (fmt.precision - 1)
    return max(e, fmt.emin) - (fmt.precision - 1)


def round_fraction(value: Fraction, fmt: FloatFormat) -> float:
    """Round an exact rational to ``fmt`` (nearest, ties to even), returned as the exactly equal Python float.

    Overflow gives ±inf; results below half the smallest subnormal give a signed zero.
    """
    if value == 0:
        return 0.0
    sign = -1.0 if value < 0 else 1.0
    num, den = abs(value.numerator), value.denominator
    quantum = quantum_exponent(binade(value), fmt)  # exponent of one unit in the last place
    # n = |value| / 2**quantum, rounded to the nearest integer, ties to even
    if quantum >= 0:
        q_num, q_den = num, den << quantum
    else:
        q_num, q_den = num << -quantum, den
    n, rem = divmod(q_num, q_den)
    twice = 2 * rem
    if twice > q_den or (twice == q_den and n & 1):
        n += 1
    if n == 0:
        return sign * 0.0
    if n.bit_length() + quantum > fmt.emax + 1:  # |result| >= 2**(emax+1)
        return sign * math.inf
    return sign * math.ldexp(float(n), quantum)


def boundaries_near(value: mpmath.mpf, radius: mpmath.mpf, fmt: FloatFormat, powers: bool = True) -> list[Fraction]:
    """The points within ``radius`` of ``value`` where what an exact value of ``fmt`` rounds to changes (the
    rounding midpoints, the overflow threshold among them) and, with ``powers``, where its ULP changes
    (the powers of two above the subnormal range), exactly, nearest first. An evaluation of an exact value
    that lands this close to one of them does not say on which side the exact value lies."""
    if not value or not mpmath.isfinite(value) or not mpmath.isfinite(radius):
        return []
    e = binade(value)
    if e < fmt.emin - fmt.precision - 2 or e > fmt.emax + 1:  # rounds to 0 or overflows: nothing changes here
        return []
    if _clear_of_boundaries(value, radius, e, fmt):
        return []
    v, r = abs(to_fraction(value)), abs(to_fraction(radius))
    quantum = Fraction(2) ** quantum_exponent(e, fmt)
    k = v // quantum
    points = [(k + Fraction(i, 2)) * quantum for i in (-1, 1, 3)]
    points.append(Fraction(2) ** e - Fraction(2) ** quantum_exponent(e - 1, fmt) / 2)  # the last midpoint below 2**e
    if powers:
        points += [Fraction(2) ** b for b in (e, e + 1) if b > fmt.emin]
    sign = -1 if value < 0 else 1
    near = sorted({point for point in points if point > 0 and abs(point - v) <= r}, key=lambda point: abs(point - v))
    return [sign * point for point in near]


def _clear_of_boundaries(value: mpmath.mpf, radius: mpmath.mpf, e: int, fmt: FloatFormat) -> bool:
    """A quick sufficient test, in integers, that no midpoint of the binade 2**e nor either of its ends lies
    within ``radius`` of ``value`` (which lies in it): the common case, without building Fractions."""
    _, man, exp, bc = value._mpf_
    _, r_man, r_exp, r_bc = radius._mpf_
    if not r_man:
        r_exp, r_bc = exp - 2, 0  # a radius of 0: any nonzero distance is larger
    shift = exp - quantum_exponent(e, fmt) + 1  # value = man·2^shift half-quanta; midpoints: odd ones
    if shift >= 0:
        return False  # on a multiple of a half quantum: the exact test decides
    units, rest = man >> -shift, man & ((1 << -shift) - 1)
    to_midpoint = rest if units & 1 else (1 << -shift) - rest  # to the nearest odd number of half quanta, ·2^exp
    to_ends = min(man - (1 << (bc - 1)), (1 << bc) - man)  # to 2**e and 2**(e+1), ·2^exp
    nearest = min(to_midpoint, to_ends)
    # nearest·2^exp >= 2^(exp + bitlen - 1) > 2^(r_exp + r_bc) > radius
    return nearest > 0 and exp + nearest.bit_length() - 1 > r_exp + r_bc


def to_fraction(value: float | mpmath.mpf) -> Exact:
    """The exact value of a float or a finite mpf; ±inf and NaN come back as floats."""
    if isinstance(value, mpmath.mpf):
        if not mpmath.isfinite(value):
            return float(value)
        sign, man, exp, _ = value._mpf_  # (man_exp drops the sign: mpf(-4).man_exp == (1, 2))
        magnitude = Fraction(int(man) << exp) if exp >= 0 else Fraction(int(man), 1 << -exp)
        return -magnitude if sign else magnitude
    value = float(value)
    if not math.isfinite(value):
        return value
    return Fraction(value)


def round_to_format(value: Exact | mpmath.mpf, fmt: FloatFormat) -> float:
    """Correctly round an exact value (Fraction, mpf, or a float) to ``fmt``; the result as a Python float."""
    if isinstance(value, mpmath.mpf) and value and mpmath.isfinite(value):
        # settle values far outside the format from the exponent alone: exp(-1e30) has a
        # binary exponent of about -1.4e30, far too many bits for an exact Fraction
        top = int(value.man_exp[1]) + int(value.bc)  # |value| < 2**top
        if top < fmt.emin - fmt.precision - 1:  # below a quarter of the smallest subnormal
            return math.copysign(0.0, value)
        if top > fmt.emax + 2:
            return math.copysign(math.inf, value)
    exact = to_fraction(value) if not isinstance(value, Fraction) else value
    if isinstance(exact, float):  # inf or nan
        return exact
    return round_fraction(exact, fmt)


def cast(values, fmt: FloatFormat) -> np.ndarray:
    """Cast exact values (nested lists of Fraction / float) to an array of ``fmt``, each rounded once."""
    array = np.asarray(values, dtype=object)
    out = np.empty(array.shape, dtype=np.float64)
    for index, value in np.ndenumerate(array):
        if isinstance(value, float) and value == 0.0:
            out[index] = value  # keep the sign of zero
        else:
            out[index] = round_to_format(value, fmt)
    return out.astype(fmt.numpy_dtype)  # exact: every value is already representable


def ulp(exact: mpmath.mpf | Fraction, fmt: FloatFormat) -> mpmath.mpf:
    """One unit in the last place of ``fmt`` at ``exact``: the spacing of the format in the binade of the exact
    (unrounded) value, the subnormal spacing below the normal range. Just below a power of two 2**k this is
    the spacing below 2**k, half that above it, even where the value rounds to 2**k (the definition of
    Goldberg and of Muller et al.'s Handbook of Floating-Point Arithmetic, ulp(x) for a real x; the README's)."""
    e = fmt.emin if exact == 0 else binade(exact)
    return mpmath.ldexp(1, quantum_exponent(e, fmt))


def ulp_error(got: float, exact: mpmath.mpf, fmt: FloatFormat) -> float:
    """|got - exact| in ULPs of ``fmt`` at ``exact``; 0 where both are the same special value.

    NaN meets only NaN and an infinity only the same infinity; an infinite ``got`` is exact
    where the exact value overflows to it under correct rounding.
    """
    got = float(got)
    if mpmath.isnan(exact) or math.isnan(got):
        return 0.0 if (mpmath.isnan(exact) and math.isnan(got)) else math.inf
    if mpmath.isinf(exact):
        return 0.0 if got == float(exact) else math.inf
    if math.isinf(got):
        return 0.0 if round_to_format(exact, fmt) == got else math.inf
    with mpmath.workprec(max(mpmath.mp.prec, 4 * fmt.precision + 64)):
        error = abs(mpmath.mpf(got) - exact) / ulp(exact, fmt)
        return float(error)


def to_hex(value: float) -> str:
    """Exact hexadecimal form of a value of any of the formats (all are exact in float64)."""
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    mantissa, exponent = value.hex().split("p")
    mantissa = mantissa.rstrip("0").rstrip(".")  # 0x1.9000000000000p+6 -> 0x1.9p+6
    return f"{mantissa}p{exponent}"


HEX_FLOAT = re.compile(r"^([+-]?)0x([0-9a-f]*)(?:\.([0-9a-f]*))?p([+-]?[0-9]+)$")
EXPONENT_LIMIT = 5000  # beyond 2**±5000 (or 10**±1500) every format rounds to 0 or overflows


def parse_hex_or_decimal(text: str) -> Exact:
    """Exact value of a decimal or C99 hexadecimal float literal (``"0.1"``, ``"0x1.8p+1"``, ``"-inf"``).

    Literals too large or too small for any format (``"1e999999999"``) become ±inf or ±0 without
    building their exact value; they round to those in every format.
    """
    stripped = text.strip().lower()
    sign = -1 if stripped.startswith("-") else 1
    body = stripped.lstrip("+-")
    if body in ("inf", "infinity", ".inf"):
        return sign * math.inf
    if body in ("nan", ".nan"):
        return math.nan
    if body.startswith("0x"):
        match = HEX_FLOAT.match(stripped)
        if not match or not (match.group(2) or match.group(3)):
            raise ValueError(f"{text!r} is not a C99 hexadecimal float")
        whole, fraction, exponent = match.group(2), match.group(3) or "", int(match.group(4))
        mantissa = int(whole + fraction, 16) if whole + fraction else 0
        exponent -= 4 * len(fraction)
        return _scaled(sign, mantissa, 2, exponent, mantissa.bit_length())
    try:
        number = decimal.Decimal(stripped)
    except decimal.InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{text!r} is not a finite decimal")
    digits, exponent = number.as_tuple().digits, number.as_tuple().exponent
    mantissa = int("".join(map(str, digits))) if digits else 0
    return _scaled(sign, mantissa, 10, exponent, len(str(mantissa)) * 4)


def _scaled(sign: int, mantissa: int, base: int, exponent: int, size_bits: int) -> Exact:
    """sign · mantissa · base**exponent exactly, or ±inf / ±0 when far outside every format."""
    if mantissa == 0:
        return -0.0 if sign < 0 else Fraction(0)
    magnitude = exponent * (1 if base == 2 else 3.33) + size_bits
    if magnitude > EXPONENT_LIMIT:
        return sign * math.inf
    if magnitude < -EXPONENT_LIMIT:
        return -0.0 if sign < 0 else 0.0
    scale = Fraction(base) ** exponent
    return sign * mantissa * scale
