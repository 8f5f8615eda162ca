"""Variants: documented contracts under which a framework's loss differs from the mathematics.

A variant is a change the reference computes exactly, defined once with its source. There are two
contracts, each parameterised, each computed by one formula in ``conformance.reference``:

- ``log_clamp(floor, grad_denominator_floor=..., constants_dtype=...)``: each log term of the
  probability loss is clamped at >= ``floor`` (torch's and Paddle's -100); the backward is
  w·(p - y)/max(p·(1 - p), grad_denominator_floor) where a floor is given.
- ``prob_clip(eps, constants_dtype=...)``: p is clipped to [eps, 1 - eps] (Keras's epsilon()), the
  ends values of the dtype under test (1 - eps computed there); no gradient flows where the clip is active.

A variant's constants are values of a stated dtype, ``constants_dtype``, as the framework holds them
(torch's EPSILON is a C++ ``float``, Paddle's a ``double`` literal), and the framework converts them to
the dtype under test: ``Variant.constant`` rounds the Python float to ``constants_dtype`` and then to the
dtype under test, each once. A constant may so become 0 (torch's float32 1e-12 in float16, where
max(p·(1 - p), 0) leaves 0/0 = NaN at p = y = 0 or 1, as torch's float16 backward returns): that is the
contract too, and the reference computes it.

An API declares the variants it implements (``Api.variants``): by name for the built-in ones
(``VARIANTS``), or as a ``Variant`` it builds with ``log_clamp`` or ``prob_clip`` (a third-party
adapter's own contract). A result that misses the mathematical value but matches the API's variant is
``acceptable (variant)``, not a pass and not a failure. Nothing is a variant unless the framework
documents it: undocumented behaviour stays a known divergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from conformance.dtypes import DTYPES, FloatFormat, get_format, round_to_format


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str
    source: str
    log_floor: float | None = None  # each log term of the probability loss is clamped at >= this
    prob_clip: float | None = None  # p is clipped to [eps, 1 - eps], both ends values of the dtype
    grad_denominator_floor: float | None = None  # the backward's p·(1 - p) is floored at this
    constants_dtype: str = "float64"  # the dtype the framework holds the constants in, before the dtype under test

    def constant(self, value: float, fmt: FloatFormat) -> Fraction:
        """``value`` as the framework has it in ``fmt``: rounded to ``constants_dtype``, then to ``fmt``."""
        held = round_to_format(Fraction(value), get_format(self.constants_dtype))
        return Fraction(round_to_format(Fraction(held), fmt))

    def clip_ends(self, fmt: FloatFormat) -> tuple[Fraction, Fraction] | None:
        """``prob_clip``'s [eps, 1 - eps] in ``fmt`` (1 - eps computed in the dtype), or None."""
        if self.prob_clip is None:
            return None
        eps = self.constant(self.prob_clip, fmt)
        return eps, Fraction(round_to_format(1 - eps, fmt))

    def grad_floor(self, fmt: FloatFormat) -> Fraction | None:
        """The backward's denominator floor in ``fmt``, or None."""
        return None if self.grad_denominator_floor is None else self.constant(self.grad_denominator_floor, fmt)

    def problems(self) -> list[str]:
        """What makes this variant no contract the reference can compute (empty when it is one)."""
        out = []
        if not isinstance(self.name, str) or not self.name.strip() or "+" in self.name:
            out.append(f"name {self.name!r}: a non-empty name without '+'")
        for field_name in ("summary", "source"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not value.strip():
                out.append(
                    f"{field_name} must say it, as a non-empty str (the source: where the framework documents it)"
                )
        if self.constants_dtype not in DTYPES:
            out.append(f"constants_dtype {self.constants_dtype!r}: one of {', '.join(DTYPES)}")
        parameters = {
            "log_floor": self.log_floor,
            "prob_clip": self.prob_clip,
            "grad_denominator_floor": self.grad_denominator_floor,
        }
        if all(v is None for v in parameters.values()):
            out.append("no parameter: a variant sets log_floor, prob_clip and/or grad_denominator_floor")
        for field_name, value in parameters.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                out.append(f"{field_name} {value!r}: a finite number")
        if not out:
            if self.log_floor is not None and self.log_floor > 0:
                out.append(f"log_floor {self.log_floor!r}: a clamp of a log term of p <= 1 is at most 0")
            if self.prob_clip is not None and not 0 < self.prob_clip < 0.5:
                out.append(f"prob_clip {self.prob_clip!r}: an eps in (0, 1/2)")
            if self.grad_denominator_floor is not None and self.grad_denominator_floor <= 0:
                out.append(f"grad_denominator_floor {self.grad_denominator_floor!r}: a floor above 0")
        return out


def _number(value: float) -> str:
    return f"{value:g}"


def log_clamp(
    floor: float,
    *,
    source: str,
    grad_denominator_floor: float | None = None,
    constants_dtype: str = "float64",
    name: str | None = None,
) -> Variant:
    """Each log term of the probability loss clamped at >= ``floor``, so no loss exceeds -floor·w; with
    ``grad_denominator_floor``, the backward w·(p - y)/max(p·(1 - p), floor), the floor a
    ``constants_dtype`` value converted to the dtype under test."""
    summary = (
        f"each log term of the probability loss is clamped at {_number(floor)}, so no loss exceeds {_number(-floor)}·w"
    )
    if grad_denominator_floor is not None:
        summary += (
            f"; the backward is w·(p - y)/max(p·(1 - p), eps), eps = {_number(grad_denominator_floor)} held in "
            f"{constants_dtype} and converted to the dtype"
        )
    default = (
        f"log_clamp({_number(floor)})"
        if grad_denominator_floor is None
        else (
            f"log_clamp({_number(floor)}, grad_denominator_floor={_number(grad_denominator_floor)} in {constants_dtype})"
        )
    )
    return Variant(
        name=name or default,
        summary=summary,
        source=source,
        log_floor=float(floor),
        grad_denominator_floor=None if grad_denominator_floor is None else float(grad_denominator_floor),
        constants_dtype=constants_dtype,
    )


def prob_clip(eps: float, *, source: str, constants_dtype: str = "float64", name: str | None = None) -> Variant:
    """p clipped to [eps, 1 - eps], eps a ``constants_dtype`` value converted to the dtype under test and
    1 - eps computed there."""
    return Variant(
        name=name or f"prob_clip({_number(eps)})",
        summary=(
            f"p is clipped to [eps, 1 - eps] with eps = {_number(eps)} (held in {constants_dtype}), both ends "
            "values of the dtype (1 - eps computed in it)"
        ),
        source=source,
        prob_clip=float(eps),
        constants_dtype=constants_dtype,
    )


def _with_summary(variant: Variant, summary: str) -> Variant:
    return Variant(**{**variant.__dict__, "summary": summary})


VARIANTS = {
    variant.name: variant
    for variant in (
        _with_summary(
            log_clamp(
                -100,
                grad_denominator_floor=1e-12,
                constants_dtype="float32",  # `constexpr float EPSILON = 1e-12;`, then scalar_t(EPSILON)
                name="log_clamp(-100)",
                source=(
                    "https://pytorch.org/docs/stable/generated/torch.nn.BCELoss.html (BCELoss clamps its log "
                    "function outputs to be greater than or equal to -100); aten/src/ATen/native/Loss.cpp :: "
                    "binary_cross_entropy_out_cpu, binary_cross_entropy_backward_out_cpu (constexpr float EPSILON = "
                    "1e-12, converted to the dtype as scalar_t(EPSILON))"
                ),
            ),
            "each log term of the probability loss is clamped at -100, so no loss exceeds 100·w; the backward is "
            "w·(p - y)/max(p·(1 - p), eps), eps = 1e-12 as a float32 constant (9.99999996e-13) converted to the "
            "dtype: exact in float64, 0 in float16 (where p = y = 0 or 1 gives 0/0 = NaN)",
        ),
        _with_summary(
            prob_clip(
                1e-7,
                name="prob_clip(1e-7)",
                source=(
                    "https://keras.io/api/utils/config_utils/#epsilon-function; keras/src/backend/{tensorflow,torch,jax}/nn.py "
                    ":: binary_crossentropy (the output clipped to [epsilon, 1 - epsilon] on each backend)"
                ),
            ),
            "p is clipped to [eps, 1 - eps] with eps = keras.config.epsilon() = 1e-7, both ends computed in the "
            "dtype (1 - 1e-7 is 0.99999988 in float32 and 1.0 in float16)",
        ),
    )
}

# The two-step op hands the probability step the sigmoid's output, a value of the dtype: under a
# variant its reference is the variant's loss of the correctly rounded sigmoid, the best any
# framework's sigmoid can pass on.
ROUNDED_SIGMOID = "sigmoid rounded to the dtype"

Declared = str | Variant  # what ``Api.variants`` holds: a built-in variant's name, or an adapter's own Variant


def get(declared: Declared) -> Variant:
    """A declared variant: a ``Variant`` as it is, a name from ``VARIANTS``."""
    if isinstance(declared, Variant):
        return declared
    try:
        return VARIANTS[declared]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown variant {declared!r} (known: {', '.join(VARIANTS)}; an adapter's own is a conformance.variants.Variant, "
            "from variants.log_clamp or variants.prob_clip)"
        ) from None


def combine(declared: tuple[Declared, ...]) -> Variant:
    """One variant applying every declared contract (an API may declare several). Each constant is taken
    as its own variant holds it (a value of its ``constants_dtype``, exact in float64), so contracts that
    hold their constants in different dtypes combine."""
    parts = [get(d) for d in declared]
    if len(parts) == 1:
        return parts[0]

    def held(attribute: str) -> float | None:
        owner = next((v for v in parts if getattr(v, attribute) is not None), None)
        if owner is None:
            return None
        return round_to_format(Fraction(getattr(owner, attribute)), get_format(owner.constants_dtype))

    return Variant(
        name=" + ".join(v.name for v in parts),
        summary="; ".join(v.summary for v in parts),
        source="; ".join(v.source for v in parts),
        log_floor=held("log_floor"),
        prob_clip=held("prob_clip"),
        grad_denominator_floor=held("grad_denominator_floor"),
        constants_dtype="float64",
    )


def describe(declared: tuple[Declared, ...], op: str) -> str:
    """The variant's display name for an API: its contracts, and the rounded sigmoid of the two-step op."""
    parts = [get(d).name for d in declared] + ([ROUNDED_SIGMOID] if op == "sigmoid_bce" and declared else [])
    return " + ".join(parts)


def problems(declared) -> list[str]:
    """What is wrong with an ``Api.variants`` value (empty when nothing is)."""
    if isinstance(declared, (str, Variant)) or not isinstance(declared, (list, tuple)):
        return [f"variants must be a tuple of variant names or conformance.variants.Variant, not {declared!r}"]
    out = []
    for item in declared:
        if isinstance(item, Variant):
            out += [f"variant {item.name!r}: {problem}" for problem in item.problems()]
            builtin = VARIANTS.get(item.name)
            if builtin is not None and builtin != item:
                out.append(
                    f"variant {item.name!r}: the name of a built-in variant with other parameters; name your own contract otherwise"
                )
        elif not isinstance(item, str) or item not in VARIANTS:
            out.append(
                f"unknown variant {item!r} (known: {', '.join(VARIANTS)}; an adapter's own is a conformance.variants.Variant, "
                "from variants.log_clamp or variants.prob_clip)"
            )
    return out
