"""A third-party adapter that declares its own variant and ships its own known divergences.

It stands for a framework built like PaddlePaddle's CPU kernels, in NumPy alone (no Paddle install):
``paddle_like.nn.functional.binary_cross_entropy`` computes, in the dtype, what
paddle/phi/kernels/cpu/bce_loss_kernel.cc and bce_loss_grad_kernel.cc (BCELossKernel, BCELossGradKernel)
compute:

- the loss (label - 1)·max(log(1 - x), -100) - label·max(log(x), -100): the log terms clamped at -100,
  as torch's are, and log(1 - x) of the rounded 1 - x rather than log1p(-x);
- the backward dout·(x - label)/max((1 - x)·x, static_cast<T>(1e-12)): the floor a C++ double literal
  converted to the dtype, exactly 1e-12 in float64, where torch's is a float constant
  (9.99999996e-13, ``constexpr float EPSILON``). torch's ``log_clamp(-100)`` does not fit it; this
  adapter declares the contract it does fit, ``PADDLE_LOG_CLAMP``, built with
  ``conformance.variants.log_clamp``.

The log(1 - x) is no documented contract: it is a known divergence, in the catalogue this adapter ships
(``paddle_like_divergences.yaml``, next to this file, named by ``Framework.known_divergences``). Run it with

    python -m conformance run --adapter examples/adapters/paddle_like_adapter.py:load --cases cases
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conformance.adapters import Api, Framework
from conformance.variants import log_clamp

NAME = "paddle_like"
VERSION = "0.1.0"
API = f"{NAME}.nn.functional.binary_cross_entropy"
KERNELS = "https://github.com/PaddlePaddle/Paddle/blob/develop/paddle/phi/kernels/cpu"

PADDLE_LOG_CLAMP = log_clamp(
    -100,
    grad_denominator_floor=1e-12,
    constants_dtype="float64",  # static_cast<T>(1e-12): a double literal, converted to the dtype
    source=f"{KERNELS}/bce_loss_kernel.cc (BCELossKernel: std::max(log(x), -100)); {KERNELS}/bce_loss_grad_kernel.cc "
    "(BCELossGradKernel: std::max((1 - x)·x, static_cast<T>(1e-12)))",
)


def _loss(inputs: dict[str, np.ndarray]) -> np.ndarray:
    x, label = inputs["probs"], inputs["target"]
    one, floor = x.dtype.type(1), x.dtype.type(-100)
    with np.errstate(divide="ignore"):
        term1 = np.maximum(np.log(x), floor)
        term2 = np.maximum(np.log(one - x), floor)
    out = (label - one) * term2 - label * term1
    return out * inputs["weight"] if "weight" in inputs else out  # paddle multiplies by the weight after the kernel


def _reduce(values: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "sum":
        return np.asarray(np.sum(values), dtype=values.dtype)
    if reduction == "mean":
        return np.asarray(np.mean(values), dtype=values.dtype)
    return values


def call(inputs: dict[str, np.ndarray], reduction: str) -> np.ndarray:
    return _reduce(_loss(inputs), reduction)


def grad(inputs: dict[str, np.ndarray], reduction: str) -> np.ndarray:
    """The backward of the reduced loss: dout (1, or 1/n for the mean, times the weight) through BCELossGradKernel."""
    x, label = inputs["probs"], inputs["target"]
    dtype = x.dtype.type
    shape = np.broadcast_shapes(*(np.shape(inputs[n]) for n in ("probs", "target", "weight") if n in inputs))
    dout = np.full(
        shape, dtype(1) / dtype(max(int(np.prod(shape)), 1)) if reduction == "mean" else dtype(1), dtype=x.dtype
    )
    if "weight" in inputs:
        dout = dout * inputs["weight"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return dout * ((x - label) / np.maximum((dtype(1) - x) * x, dtype(1e-12)))


def repro(args: dict[str, str], dtype: str, reduction: str) -> str:
    """One line of NumPy that computes the loss the same way (the weight, when present, multiplies it)."""
    w = f" * t({args['weight']})" if "weight" in args else ""
    reduce = {"none": "{}", "sum": "numpy.sum({})", "mean": "numpy.mean({})"}[reduction]
    loss = "((y - 1) * numpy.maximum(numpy.log(1 - x), -100) - y * numpy.maximum(numpy.log(x), -100))" + w
    return (
        f"import numpy; t = lambda v: numpy.array([float.fromhex(h) for h in v], dtype=numpy.{dtype}); "
        f"x, y = t({args['input']}), t({args['target']}); print(numpy.asarray({reduce.format(loss)}).tolist())"
    )


def load() -> Framework:
    api = Api(
        name=API,
        framework=NAME,
        op="bce",
        call=call,
        grad=grad,
        reduced_by="numpy.mean / numpy.sum of the loss (paddle's reduction= does the same)",
        repro=repro,
        dtypes=("float32", "float64"),  # the CPU kernels are registered for float and double
        unsupported={
            "label_smoothing": f"{API} has no label_smoothing argument",
            "grad_target": f"{API}'s backward gives no gradient for the label",
        },
        variants=(PADDLE_LOG_CLAMP,),
    )
    return Framework(
        name=NAME,
        versions={NAME: VERSION},
        apis=[api],
        known_divergences=(Path(__file__).with_name("paddle_like_divergences.yaml"),),
    )
