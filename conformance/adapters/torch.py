"""PyTorch: ``torch.nn.functional.binary_cross_entropy`` (probabilities), ``..._with_logits``, and
``torch.sigmoid`` followed by ``binary_cross_entropy`` (the two-step path).

Both losses take ``reduction=`` natively. Semantics, from pytorch/pytorch:
- ``binary_cross_entropy`` clamps each log term at -100 (aten/src/ATen/native/Loss.cpp ::
  binary_cross_entropy_out_cpu; documented on torch.nn.BCELoss) and rejects inputs outside [0, 1],
  NaN included, with a RuntimeError.
- ``binary_cross_entropy_with_logits`` computes ``(1-y)·x - log_sigmoid(x)·(1+(q-1)·y)``
  (aten/src/ATen/native/Loss.cpp :: binary_cross_entropy_with_logits).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from conformance.adapters import Api, Framework, keyword_args, repro_line

PRELUDE = "import torch"
TENSOR = "lambda v: torch.tensor([float.fromhex(h) for h in v], dtype=torch.{dtype})"


def load() -> Framework:
    import torch
    import torch.nn.functional as F

    def to_torch(array: np.ndarray):
        if array.dtype == ml_dtypes.bfloat16:  # torch.from_numpy does not know ml_dtypes' bfloat16
            return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(array.copy())

    def to_numpy(tensor) -> np.ndarray:
        tensor = tensor.detach()
        if tensor.dtype == torch.bfloat16:
            return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return tensor.numpy()

    # each loss takes its first input as a tensor, so that the same code serves the value and the gradient
    def bce(p, inputs, reduction):
        weight = to_torch(inputs["weight"]) if "weight" in inputs else None
        return F.binary_cross_entropy(p, to_torch(inputs["target"]), weight=weight, reduction=reduction)

    def bce_with_logits(x, inputs, reduction):
        optional = {k: to_torch(inputs[k]) for k in ("weight", "pos_weight") if k in inputs}
        return F.binary_cross_entropy_with_logits(x, to_torch(inputs["target"]), reduction=reduction, **optional)

    def sigmoid_bce(x, inputs, reduction):
        return bce(torch.sigmoid(x), inputs, reduction)

    def value(loss, first: str):
        return lambda inputs, reduction: to_numpy(loss(to_torch(inputs[first]), inputs, reduction))

    def gradient(loss, first: str):
        def grad(inputs, reduction):  # torch.autograd, as a user would: backward() on the loss
            x = to_torch(inputs[first]).requires_grad_(True)
            out = loss(x, inputs, reduction)
            out.backward(torch.ones_like(out))  # for `none`: the gradient of the sum of the losses
            return to_numpy(x.grad)

        return grad

    def repro_for(function: str, optional: dict[str, str], before: str = "{}"):
        def repro(args, dtype, reduction):
            call = (
                f"{function}({before.format('t(' + args['input'] + ')')}, t({args['target']})"
                f"{keyword_args(args, optional)}, reduction={reduction!r})"
            )
            return repro_line(PRELUDE, TENSOR.format(dtype=dtype), call)

        return repro

    bce_name = "torch.nn.functional.binary_cross_entropy"
    logits_name = "torch.nn.functional.binary_cross_entropy_with_logits"
    no_pos_weight = f"{bce_name} has no pos_weight argument (only {logits_name} has)"
    apis = [
        Api(
            name=bce_name,
            framework="torch",
            op="bce",
            call=value(bce, "probs"),
            grad=gradient(bce, "probs"),
            reduced_by="reduction= argument",
            repro=repro_for(bce_name, {"weight": "weight"}),
            unsupported={"pos_weight": no_pos_weight},
            variants=("log_clamp(-100)",),
        ),
        Api(
            name=logits_name,
            framework="torch",
            op="bce_with_logits",
            call=value(bce_with_logits, "logits"),
            grad=gradient(bce_with_logits, "logits"),
            reduced_by="reduction= argument",
            repro=repro_for(logits_name, {"weight": "weight", "pos_weight": "pos_weight"}),
        ),
        Api(
            name=f"torch.sigmoid+{bce_name}",
            framework="torch",
            op="sigmoid_bce",
            call=value(sigmoid_bce, "logits"),
            grad=gradient(sigmoid_bce, "logits"),
            reduced_by="reduction= argument",
            repro=repro_for(bce_name, {"weight": "weight"}, before="torch.sigmoid({})"),
            unsupported={"pos_weight": no_pos_weight},
            variants=("log_clamp(-100)",),
        ),
    ]
    return Framework(name="torch", versions={"torch": torch.__version__}, apis=apis)
