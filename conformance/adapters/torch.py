"""PyTorch: ``torch.nn.functional.binary_cross_entropy`` (probabilities), ``..._with_logits``, and
``torch.sigmoid`` followed by ``binary_cross_entropy`` (the two-step path).

Both losses take ``reduction=`` natively. Semantics, from pytorch/pytorch:
- ``binary_cross_entropy`` clamps each log term at -100 (aten/src/ATen/native/Loss.cpp ::
  binary_cross_entropy_out_cpu; documented on torch.nn.BCELoss) and rejects inputs outside [0, 1],
  NaN included, with a RuntimeError.
- ``binary_cross_entropy_with_logits`` computes ``(1-y)·x - log_sigmoid(x)·(1+(q-1)·y)``
  (aten/src/ATen/native/Loss.cpp :: binary_cross_entropy_with_logits).

Keras 3 on its torch backend, as APIs of their own: ``keras.losses.binary_crossentropy[torch]`` and
``keras.losses.binary_crossentropy(from_logits=True)[torch]``, called on ``x[..., None]`` (its mean over
the last axis is then elementwise) and reduced by ``keras.ops.mean`` / ``keras.ops.sum``; gradients
through torch.autograd. keras/src/backend/torch/nn.py :: binary_crossentropy clips p to [ε, 1-ε],
ε = keras.config.epsilon() = 1e-7, then calls ``torch.nn.functional.binary_cross_entropy`` (so the
clamp of the log at -100 applies too, where the clip leaves p = 1: float16 and bfloat16), and with
``from_logits=True`` calls ``binary_cross_entropy_with_logits``. Both take ``label_smoothing``
(keras/src/losses/losses.py :: binary_crossentropy: y·(1 - ls) + 0.5·ls, in the dtype). Keras picks
its backend once per process: see conformance/adapters/keras_backend.py.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from conformance.adapters import Api, Framework, keyword_args, label_smoothing, label_smoothing_arg, repro_line
from conformance.adapters.keras_backend import backend_apis, describe, import_keras, keras_repro as make_keras_repro

PRELUDE = "import torch"
KERAS_PRELUDE = "import os; os.environ['KERAS_BACKEND'] = 'torch'; import torch, keras"
TENSOR = "lambda v: torch.tensor([float.fromhex(h) for h in v], dtype=torch.{dtype})"


def _device(torch, device: str):
    """The ``torch.device`` of ``--device``: ``cpu``, or ``cuda[:N]`` where torch sees that GPU; else the
    error naming the devices there (``conformance.devices``)."""
    from conformance import devices

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    available = ["cpu", *(f"cuda:{i}" for i in range(count))]
    kind, index = devices.parse("torch", device, ("cpu", "cuda"), available)
    if kind == "cuda" and index >= count:
        why = f"torch {torch.__version__} sees {count} CUDA device{'s' * (count != 1)}"
        raise devices.absent("torch", device, available, why)
    return torch.device("cpu") if kind == "cpu" else torch.device("cuda", index)


def _device_settings(torch, target) -> dict[str, str]:
    """What decides the float behaviour of a CUDA device, for the record: its name and compute capability,
    CUDA's version, and the TF32 switches (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
    torch.get_float32_matmul_precision: pytorch.org/docs/stable/notes/cuda.html, "TensorFloat-32 (TF32) on Ampere
    (and later) devices"). Nothing on the CPU, whose record is what it always was."""
    if target.type != "cuda":
        return {}
    from conformance import devices

    major, minor = torch.cuda.get_device_capability(target)
    driver = devices.nvidia_driver(target.index or 0)
    return {
        "device_name": torch.cuda.get_device_name(target),
        "device_capability": f"{major}.{minor}",
        "cuda": str(torch.version.cuda),
        **({"driver": driver} if driver else {}),
        "allow_tf32.matmul": str(torch.backends.cuda.matmul.allow_tf32),
        "allow_tf32.cudnn": str(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def load(device: str = "cpu") -> Framework:
    import os

    import torch
    import torch.nn.functional as F

    target = _device(torch, device)
    # Keras's torch backend places its tensors on the GPU where there is one, unless told
    # (keras/src/backend/torch/core.py: DEFAULT_DEVICE from KERAS_TORCH_DEVICE, read when Keras is imported)
    os.environ["KERAS_TORCH_DEVICE"] = str(target)

    def to_torch(array):
        if isinstance(array, torch.Tensor):  # the target of a target gradient, already a leaf that requires grad
            return array
        # np.array: a copy the tensor owns, and an array even of a numpy scalar (what numpy's arithmetic on a
        # 0-d array returns), which torch.from_numpy refuses
        array = np.array(array)
        if array.dtype == ml_dtypes.bfloat16:  # torch.from_numpy does not know ml_dtypes' bfloat16
            tensor = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        else:
            tensor = torch.from_numpy(array)
        return tensor if target.type == "cpu" else tensor.to(target)  # the same dtype, the same values

    def to_numpy(tensor) -> np.ndarray:
        tensor = tensor.detach().cpu()  # Keras's torch backend puts tensors on its default device
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

    keras, keras_missing = import_keras("torch", "torch")

    def keras_bce(from_logits: bool):
        def loss(first, inputs, reduction):
            y = to_torch(inputs["target"])
            out = keras.losses.binary_crossentropy(
                y[..., None], first[..., None], from_logits=from_logits, label_smoothing=label_smoothing(inputs)
            )
            return {"none": lambda v: v, "mean": keras.ops.mean, "sum": keras.ops.sum}[reduction](out)

        return loss

    def value(loss, first: str):
        return lambda inputs, reduction: to_numpy(loss(to_torch(inputs[first]), inputs, reduction))

    def gradient(loss, first: str):
        def grad(inputs, reduction):  # torch.autograd, as a user would: backward() on the loss
            x = to_torch(inputs[first]).requires_grad_(True)
            out = loss(x, inputs, reduction)
            out.backward(torch.ones_like(out))  # for `none`: the gradient of the sum of the losses
            return to_numpy(x.grad)

        return grad

    def target_gradient(loss, first: str):
        def grad_target(inputs, reduction):  # torch.autograd with respect to the target tensor
            y = to_torch(inputs["target"]).requires_grad_(True)
            out = loss(to_torch(inputs[first]), {**inputs, "target": y}, reduction)
            out.backward(torch.ones_like(out))  # for `none`: the gradient of the sum of the losses
            return to_numpy(y.grad)

        return grad_target

    def repro_for(function: str, optional: dict[str, str], before: str = "{}"):
        def repro(args, dtype, reduction):
            call = (
                f"{function}({before.format('t(' + args['input'] + ')')}, t({args['target']})"
                f"{keyword_args(args, optional)}, reduction={reduction!r})"
            )
            return repro_line(PRELUDE, TENSOR.format(dtype=dtype), call)

        return repro

    keras_repro = make_keras_repro(KERAS_PRELUDE, TENSOR, ".detach().cpu().tolist()")

    bce_name = "torch.nn.functional.binary_cross_entropy"
    logits_name = "torch.nn.functional.binary_cross_entropy_with_logits"
    no_pos_weight = f"{bce_name} has no pos_weight argument (only {logits_name} has)"
    no_label_smoothing = "{} has no label_smoothing argument (Keras's binary_crossentropy has)"
    apis = [
        Api(
            name=bce_name,
            framework="torch",
            op="bce",
            call=value(bce, "probs"),
            grad=gradient(bce, "probs"),
            grad_target=target_gradient(bce, "probs"),
            reduced_by="reduction= argument",
            repro=repro_for(bce_name, {"weight": "weight"}),
            unsupported={"pos_weight": no_pos_weight, "label_smoothing": no_label_smoothing.format(bce_name)},
            variants=("log_clamp(-100)",),
        ),
        Api(
            name=logits_name,
            framework="torch",
            op="bce_with_logits",
            call=value(bce_with_logits, "logits"),
            grad=gradient(bce_with_logits, "logits"),
            grad_target=target_gradient(bce_with_logits, "logits"),
            reduced_by="reduction= argument",
            repro=repro_for(logits_name, {"weight": "weight", "pos_weight": "pos_weight"}),
            unsupported={"label_smoothing": no_label_smoothing.format(logits_name)},
        ),
        Api(
            name=f"torch.sigmoid+{bce_name}",
            framework="torch",
            op="sigmoid_bce",
            call=value(sigmoid_bce, "logits"),
            grad=gradient(sigmoid_bce, "logits"),
            grad_target=target_gradient(sigmoid_bce, "logits"),
            reduced_by="reduction= argument",
            repro=repro_for(bce_name, {"weight": "weight"}, before="torch.sigmoid({})"),
            unsupported={"pos_weight": no_pos_weight, "label_smoothing": no_label_smoothing.format(bce_name)},
            variants=("log_clamp(-100)",),
        ),
    ]
    # the backend clips p, then torch's binary_cross_entropy clamps each log at -100
    apis += backend_apis(
        "torch", keras, keras_missing, value, gradient, keras_bce, keras_repro, ("prob_clip(1e-7)", "log_clamp(-100)"), target_gradient
    )
    versions, settings = describe(keras, {"torch": torch.__version__}, _device_settings(torch, target))
    return Framework(
        name="torch",
        versions=versions,
        apis=apis,
        settings=settings,
        device=str(torch.empty(0, device=target).device),
        multiply=lambda values, factor: to_numpy(to_torch(values) * factor),  # on the device: its FTZ / DAZ
    )
