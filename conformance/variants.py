"""Named variants: documented contracts under which a framework's loss differs from the mathematics.

A variant is defined once, with its source, as a change the reference can compute exactly. An
API declares the variants it implements (``Api.variants``); a result that misses the
mathematical value but matches the API's variant is ``acceptable (variant)``, not a pass and not
a failure. Nothing is a variant unless the framework documents it: undocumented behaviour stays
a known divergence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str
    source: str
    log_floor: float | None = None  # each log term of the probability loss is clamped at >= this
    prob_clip: float | None = None  # p is clipped to [eps, 1 - eps], both computed in the dtype
    grad_denominator_floor: float | None = None  # the backward's p·(1 - p) is floored at this


VARIANTS = {
    "log_clamp(-100)": Variant(
        name="log_clamp(-100)",
        summary=(
            "each log term of the probability loss is clamped at -100, so no loss exceeds 100·w; the "
            "backward is w·(p - y)/max(p·(1 - p), eps), eps = 1e-12 as a float32 constant (9.99999996e-13) "
            "in every dtype"
        ),
        source=(
            "https://pytorch.org/docs/stable/generated/torch.nn.BCELoss.html (BCELoss clamps its log "
            "function outputs to be greater than or equal to -100); aten/src/ATen/native/Loss.cpp :: "
            "binary_cross_entropy_out_cpu, binary_cross_entropy_backward_out_cpu (EPSILON = 1e-12)"
        ),
        log_floor=-100.0,
        grad_denominator_floor=9.999999960041972e-13,  # float32(1e-12): measured bit-exact in float64 too
    ),
    "prob_clip(1e-7)": Variant(
        name="prob_clip(1e-7)",
        summary=(
            "p is clipped to [eps, 1 - eps] with eps = keras.config.epsilon() = 1e-7, both ends "
            "computed in the dtype (1 - 1e-7 is 0.99999988 in float32 and 1.0 in float16)"
        ),
        source=(
            "https://keras.io/api/utils/config_utils/#epsilon-function; keras/src/backend/{tensorflow,torch,jax}/nn.py "
            ":: binary_crossentropy (the output clipped to [epsilon, 1 - epsilon] on each backend)"
        ),
        prob_clip=1e-7,
    ),
}

# The two-step op hands the probability step the sigmoid's output, a value of the dtype: under a
# variant its reference is the variant's loss of the correctly rounded sigmoid, the best any
# framework's sigmoid can pass on.
ROUNDED_SIGMOID = "sigmoid rounded to the dtype"


def get(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})") from None


def combine(names: tuple[str, ...]) -> Variant:
    """One variant applying every named contract (an API may declare several)."""
    parts = [get(name) for name in names]
    return Variant(
        name=" + ".join(names),
        summary="; ".join(v.summary for v in parts),
        source="; ".join(v.source for v in parts),
        log_floor=next((v.log_floor for v in parts if v.log_floor is not None), None),
        prob_clip=next((v.prob_clip for v in parts if v.prob_clip is not None), None),
        grad_denominator_floor=next((v.grad_denominator_floor for v in parts if v.grad_denominator_floor is not None), None),
    )


def describe(names: tuple[str, ...], op: str) -> str:
    """The variant's display name for an API: its contracts, and the rounded sigmoid of the two-step op."""
    parts = list(names) + ([ROUNDED_SIGMOID] if op == "sigmoid_bce" and names else [])
    return " + ".join(parts)
