"""NumPy: the blog's hand formula (a negative control) and the stable logits formula, written in NumPy.

NumPy has no BCE API, so these two formulas are the APIs. The hand formula is the blog's
``p = 1/(1+exp(-x))``, ``-(y·log p + (1-y)·log(1-p))``: it overflows and takes log 0 where the
stable form ``max(x,0) - x·y + log1p(exp(-|x|))`` does not, which is what a conformance suite
must catch. Reductions are ``numpy.mean`` / ``numpy.sum``; every step stays in the input dtype.

Each formula takes its array namespace ``xp`` (numpy by default): ``conformance.adapters.rounded``
runs the same formulas on a namespace whose exp, log, log1p, mean and sum are correctly rounded, the
project's own tests' subject whose results no host's SIMD kernels can change.
"""

from __future__ import annotations

import numpy as np

from conformance.adapters import Api, Framework, repro_line

PRELUDE = "import numpy as np, ml_dtypes"
TENSOR = "lambda v: np.array([float.fromhex(h) for h in v]).astype({dtype})"
SOURCE = "conformance/adapters/numpy.py"


def _weights(inputs, dtype):
    """The weight (1 when absent) and the pos_weight (None when absent)."""
    return inputs.get("weight", np.ones((), dtype=dtype)), inputs.get("pos_weight")


def hand_bce(p, y, w, q, xp=np):
    """The blog's formula: -(y·log p + (1-y)·log(1-p)), with pos_weight q on the positive term."""
    one = np.ones((), dtype=p.dtype)
    positive = y if q is None else q * y
    return -w * (positive * xp.log(p) + (one - y) * xp.log(one - p))


def hand_sigmoid(x, xp=np):
    one = np.ones((), dtype=x.dtype)
    return one / (one + xp.exp(-x))


def stable_bce_with_logits(x, y, w, q, xp=np):
    """max(x,0) - x·y + log1p(exp(-|x|)); with pos_weight, torch's form (1-y)·x + (1+(q-1)y)·softplus(-x)."""
    zero, one = np.zeros((), dtype=x.dtype), np.ones((), dtype=x.dtype)
    if q is None:
        return w * (np.maximum(x, zero) - x * y + xp.log1p(xp.exp(-np.abs(x))))
    softplus_neg = np.maximum(-x, zero) + xp.log1p(xp.exp(-np.abs(x)))
    return w * ((one - y) * x + (one + (q - one) * y) * softplus_neg)


def _api(
    name: str, op: str, loss, expression: str, with_pos_weight: str | None = None, *, framework: str = "numpy",
    xp=np, prelude: str = PRELUDE, no_autodiff: str = "NumPy has no automatic differentiation",
) -> Api:  # fmt: skip
    reduce = {"none": lambda v: v, "mean": xp.mean, "sum": xp.sum}

    def call(inputs, reduction):
        first = inputs["probs"] if op == "bce" else inputs["logits"]
        w, q = _weights(inputs, first.dtype)
        with np.errstate(all="ignore"):  # overflow and log(0) are what is being measured
            if op == "sigmoid_bce":
                first = hand_sigmoid(first, xp)
            return np.asarray(reduce[reduction](loss(first, inputs["target"], w, q, xp)))

    def repro(args, dtype, reduction):
        tensor = TENSOR.format(dtype=f"ml_dtypes.bfloat16" if dtype == "bfloat16" else f"np.{dtype}")
        x, y = args["input"], args["target"]
        w = f"t({args['weight']})" if "weight" in args else "1"
        q = f"t({args['pos_weight']})" if "pos_weight" in args else "1"
        template = with_pos_weight if with_pos_weight and "pos_weight" in args else expression
        body = template.format(x=f"t({x})", y=f"t({y})", w=w, q=q)
        reduce = {"none": "{}", "mean": "np.mean({})", "sum": "np.sum({})"}[reduction]
        return repro_line(prelude, tensor, reduce.format(body))

    return Api(
        name=name,
        framework=framework,
        op=op,
        call=call,
        reduced_by=f"{framework}.mean / {framework}.sum (a formula has no reduction argument)",
        repro=repro,
        unsupported={
            "grad": no_autodiff,
            "grad_target": no_autodiff,
            "label_smoothing": f"{name} has no label_smoothing argument",
        },
    )


def apis(framework: str = "numpy", **options) -> list[Api]:
    """The three formulas as APIs named ``<framework>.<formula>``; ``options`` go to ``_api`` (the namespace
    ``xp``, the reproducer's ``prelude``, the ``no_autodiff`` reason)."""
    hand, stable = f"{framework}.hand_bce", f"{framework}.stable_bce_with_logits"
    return [
        _api(hand, "bce", hand_bce, "-{w} * ({q} * {y} * np.log({x}) + (1 - {y}) * np.log(1 - {x}))", framework=framework, **options),
        _api(
            f"{framework}.hand_sigmoid+{hand}",
            "sigmoid_bce",
            hand_bce,
            "(lambda p: -{w} * ({q} * {y} * np.log(p) + (1 - {y}) * np.log(1 - p)))(1 / (1 + np.exp(-{x})))",
            framework=framework,
            **options,
        ),
        _api(
            stable,
            "bce_with_logits",
            stable_bce_with_logits,
            "{w} * (np.maximum({x}, 0) - {x} * {y} + np.log1p(np.exp(-np.abs({x}))))",
            "{w} * ((1 - {y}) * {x} + (1 + ({q} - 1) * {y}) * (np.maximum(-{x}, 0) + np.log1p(np.exp(-np.abs({x})))))",
            framework=framework,
            **options,
        ),
    ]


def multiply(values: np.ndarray, factor: float) -> np.ndarray:
    """The subnormal probe's operation: an IEEE multiply in the values' dtype."""
    return values * values.dtype.type(factor)


def load(device: str = "cpu") -> Framework:
    from conformance import devices

    devices.cpu_only("numpy", device)
    return Framework(name="numpy", versions={"numpy": np.__version__}, apis=apis("numpy"), multiply=multiply)
