"""Keras 3 on a chosen backend, for the adapters that test Keras's losses on TensorFlow, PyTorch and JAX.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, and keeps that backend for the
life of the process (keras/src/backend/config.py). ``import_keras(backend)`` sets the variable for
that import only (and puts back what was there), so a user's own ``KERAS_BACKEND`` cannot send the
torch adapter's Keras APIs to another backend. Where Keras was already imported in this process on
another backend (two frameworks loaded in one process), nothing can switch it: the Keras APIs of
this adapter are then ``unsupported``, with the reason, rather than run on the wrong backend.
"""

from __future__ import annotations

import os
import sys

from conformance.adapters import Api, Unsupported, label_smoothing_arg, repro_line

KERAS_NAME = "keras.losses.binary_crossentropy"
REDUCED_BY = "keras.ops.mean / keras.ops.sum over the elementwise loss (called on x[..., None])"


def import_keras(backend: str, framework: str):
    """``(keras, None)`` with Keras running on ``backend``, or ``(None, why)`` when this process's Keras
    runs on another backend. Raises ImportError, naming keras, when Keras is not installed."""
    loaded = sys.modules.get("keras")
    if loaded is None:
        previous = os.environ.get("KERAS_BACKEND")
        os.environ["KERAS_BACKEND"] = backend
        try:
            import keras
        except ImportError as exc:
            raise ImportError(f"keras is not installed ({exc}), and the {framework} adapter tests Keras on {backend}") from exc
        finally:
            if previous is None:
                os.environ.pop("KERAS_BACKEND", None)
            else:
                os.environ["KERAS_BACKEND"] = previous
        loaded = keras
    actual = loaded.backend.backend()
    if actual != backend:
        return None, (
            f"Keras was already imported in this process on its {actual!r} backend, and Keras picks its backend "
            f"once per process (KERAS_BACKEND): its {backend} backend needs a process of its own "
            f"(python -m conformance run --framework {framework})"
        )
    return loaded, None


def unavailable(why: str):
    """A ``call`` / ``grad`` for a Keras API whose backend is not this process's: every check is unsupported."""

    def call(inputs, reduction):
        raise Unsupported(why)

    return call


def describe(keras, versions: dict[str, str], settings: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The framework's versions and settings with Keras's added, when this process's Keras serves the adapter."""
    if keras is None:
        return versions, settings
    return (
        {**versions, "keras": keras.__version__},
        {**settings, "keras_backend": keras.backend.backend(), "keras_epsilon": repr(keras.config.epsilon())},
    )


def keras_repro(prelude: str, tensor: str, to_list: str = ".tolist()", jit=None):
    """``repro(from_logits)`` for Keras's loss called on ``x[..., None]`` and reduced with keras.ops.

    ``jit(expression, arguments)``, where the adapter calls the loss compiled (JAX's): the line's call built from
    an expression in the names ``x`` and ``y`` and the tensors they stand for (``conformance.adapters.jax``)."""

    def for_logits(from_logits: bool):
        def repro(args, dtype, reduction):
            x, y = ("x", "y") if jit else (f"t({args['input']})", f"t({args['target']})")
            call = (
                f"{KERAS_NAME}({y}[..., None], {x}[..., None]"
                f"{', from_logits=True' if from_logits else ''}{label_smoothing_arg(args)})"
            )
            reduce = {"none": "{}", "mean": "keras.ops.mean({})", "sum": "keras.ops.sum({})"}[reduction]
            call = reduce.format(call)
            if jit:
                call = jit(call, {"x": f"t({args['input']})", "y": f"t({args['target']})"})
            return repro_line(prelude, tensor.format(dtype=dtype), call, to_list)

        return repro

    return for_logits


def backend_apis(
    framework: str, keras, missing: str | None, value, gradient, loss, repro, prob_variants: tuple[str, ...], target_gradient=None
) -> list[Api]:
    """Keras's loss on probabilities and on logits, as APIs named for the ``framework`` backend they run on.

    ``loss(from_logits)`` is the adapter's Keras loss taking its first input as a tensor; ``value`` and
    ``gradient`` (and ``target_gradient``, for the gradient with respect to the target; None: none) wrap it
    as the adapter does for its own APIs; ``prob_variants`` are the variants the
    backend's probability path documents.
    """
    apis = []
    for from_logits, op, first in ((False, "bce", "probs"), (True, "bce_with_logits", "logits")):
        apis.append(
            Api(
                name=f"{KERAS_NAME}{'(from_logits=True)' if from_logits else ''}[{framework}]",
                framework=framework,
                op=op,
                call=unavailable(missing) if keras is None else value(loss(from_logits), first),
                grad=unavailable(missing) if keras is None else gradient(loss(from_logits), first),
                grad_target=(
                    None if target_gradient is None
                    else unavailable(missing) if keras is None
                    else target_gradient(loss(from_logits), first)
                ),
                reduced_by=REDUCED_BY,
                repro=repro(from_logits),
                unsupported={
                    "weight": f"{KERAS_NAME} has no weight argument",
                    **({"pos_weight": f"{KERAS_NAME} has no pos_weight argument"} if from_logits else {}),
                },
                variants=() if from_logits else prob_variants,
            )
        )
    return apis
