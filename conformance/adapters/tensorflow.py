"""TensorFlow: ``tf.nn.sigmoid_cross_entropy_with_logits``, ``tf.nn.weighted_cross_entropy_with_logits``
(TensorFlow's pos_weight API) and Keras 3's ``keras.losses.binary_crossentropy`` (on probabilities, and
with ``from_logits=True``), on Keras's TensorFlow backend: the Keras API names without a ``[backend]``
suffix are Keras on TensorFlow (the torch and jax adapters name theirs ``...[torch]``, ``...[jax]``).

None of these takes a reduction argument: mean and sum are ``tf.reduce_mean`` / ``tf.reduce_sum``
and ``keras.ops.mean`` / ``keras.ops.sum``. ``keras.losses.binary_crossentropy`` averages over the
last axis (keras/src/losses/losses.py :: binary_crossentropy), so it is called on ``x[..., None]``:
a last axis of one element, which makes its result elementwise. The APIs named ``...(axis=-1)`` call it
on the inputs as they are, with that documented reduction: ``none`` is the row means (shape
input.shape[:-1]), ``sum`` / ``mean`` their keras.ops.sum / keras.ops.mean, and the reference computes
the same (``Api.axis_mean``). Semantics:
- ``tf.nn.sigmoid_cross_entropy_with_logits``: ``max(x,0) - x·z + log1p(exp(-|x|))``
  (tensorflow/python/ops/nn_impl.py :: sigmoid_cross_entropy_with_logits).
- ``tf.nn.weighted_cross_entropy_with_logits(labels, logits, pos_weight)``: torch's pos_weight form,
  ``q·z·(-log σ(x)) + (1-z)·(-log(1-σ(x)))``, evaluated as ``(1-z)·x + (1+(q-1)·z)·(log1p(exp(-|x|)) + max(-x,0))``
  (tensorflow/python/ops/nn_impl.py :: weighted_cross_entropy_with_logits_v2, exported as
  tf.nn.weighted_cross_entropy_with_logits). pos_weight is required: a case without one passes
  pos_weight = 1 as a scalar of the dtype under test, which makes the form the plain loss exactly
  (1 + 0·z = 1). It has no weight argument.
- Keras, probabilities: clips p to [ε, 1-ε], ε = keras.config.epsilon() = 1e-7
  (keras/src/backend/tensorflow/nn.py :: binary_crossentropy); with ``from_logits=True`` it calls
  ``tf.nn.sigmoid_cross_entropy_with_logits``. All of them take ``label_smoothing``
  (keras/src/losses/losses.py :: binary_crossentropy: y·(1 - ls) + 0.5·ls, computed in the dtype);
  the tf.nn APIs have none.
Keras picks its backend once per process: see conformance/adapters/keras_backend.py.
"""

from __future__ import annotations

import os
from dataclasses import replace

from conformance.adapters import Api, Framework, label_smoothing, label_smoothing_arg, repro_line
from conformance.adapters.keras_backend import describe, import_keras, unavailable

PRELUDE = "import tensorflow as tf, keras"
TENSOR = "lambda v: tf.constant([float.fromhex(h) for h in v], dtype=tf.{dtype})"


def _device(tf, device: str) -> tuple[str, int, bool]:
    """The device name of ``--device`` (``/CPU:0``, ``/GPU:N``), its index, and whether TensorFlow sees any GPU (then it
    places every op there unless told: tensorflow.org/guide/gpu, "Manual device placement"); an absent GPU
    is the error naming the devices there (``conformance.devices``)."""
    from conformance import devices

    gpus = tf.config.list_logical_devices("GPU")
    available = ["CPU:0", *(f"GPU:{i}" for i in range(len(gpus)))]
    kind, index = devices.parse("tensorflow", device, ("cpu", "gpu"), available)
    if kind == "cpu" and index > 0:
        raise devices.absent("tensorflow", device, available, "its CPU is one device, CPU:0")
    if kind == "gpu" and index >= len(gpus):
        why = f"tensorflow {tf.__version__} sees {len(gpus)} GPU{'s' * (len(gpus) != 1)}"
        raise devices.absent("tensorflow", device, available, why)
    return f"/{kind.upper()}:{index}", index, bool(gpus)


def _placed(tf, name: str, function):
    """``function`` with every op it makes placed on the device ``name``."""
    if function is None:
        return None

    def on_device(*args, **kwargs):
        with tf.device(name):
            return function(*args, **kwargs)

    return on_device


def load(device: str = "cpu") -> Framework:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras, keras_missing = import_keras("tensorflow", "tensorflow")
    import tensorflow as tf

    placement, index, any_gpu = _device(tf, device)
    from conformance import devices

    tf_reduce = {"none": lambda v: v, "mean": tf.reduce_mean, "sum": tf.reduce_sum}

    # each loss takes its first input as a tensor, so that the same code serves the value and the gradient
    def sigmoid_cross_entropy_with_logits(x, inputs, reduction):
        y = tf.convert_to_tensor(inputs["target"])  # a watched tensor for a target gradient
        return tf_reduce[reduction](tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x))

    def weighted_cross_entropy_with_logits(x, inputs, reduction):
        y = tf.convert_to_tensor(inputs["target"])  # a watched tensor for a target gradient
        # pos_weight is required: 1, in the dtype, for a case without one
        q = tf.constant(inputs["pos_weight"]) if "pos_weight" in inputs else tf.ones((), dtype=x.dtype)
        return tf_reduce[reduction](tf.nn.weighted_cross_entropy_with_logits(labels=y, logits=x, pos_weight=q))

    def keras_bce(from_logits: bool, sigmoid_first: bool = False):
        def loss(first, inputs, reduction):
            if sigmoid_first:
                first = tf.math.sigmoid(first)  # eager: Keras sees a plain tensor, not sigmoid logits
            y = tf.convert_to_tensor(inputs["target"])  # a watched tensor for a target gradient
            out = keras.losses.binary_crossentropy(
                y[..., None], first[..., None], from_logits=from_logits, label_smoothing=label_smoothing(inputs)
            )
            return {"none": lambda v: v, "mean": keras.ops.mean, "sum": keras.ops.sum}[reduction](out)

        return loss

    def keras_bce_axis(from_logits: bool):
        """keras.losses.binary_crossentropy(axis=-1) on the inputs as they are: its own mean over the last axis."""

        def loss(first, inputs, reduction):
            y = tf.convert_to_tensor(inputs["target"])  # a watched tensor for a target gradient
            out = keras.losses.binary_crossentropy(
                y, first, from_logits=from_logits, label_smoothing=label_smoothing(inputs), axis=-1
            )
            return {"none": lambda v: v, "mean": keras.ops.mean, "sum": keras.ops.sum}[reduction](out)

        return loss

    def value(loss, first: str):
        return lambda inputs, reduction: loss(tf.constant(inputs[first]), inputs, reduction).numpy()

    def gradient(loss, first: str):
        def grad(inputs, reduction):  # tf.GradientTape, as a user would
            x = tf.constant(inputs[first])
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = loss(x, inputs, reduction)
            return tape.gradient(out, x).numpy()  # for `none`: the gradient of the sum of the losses

        return grad

    def target_gradient(loss, first: str):
        def grad_target(inputs, reduction):  # tf.GradientTape watching the target
            x, y = tf.constant(inputs[first]), tf.constant(inputs["target"])
            with tf.GradientTape() as tape:
                tape.watch(y)
                out = loss(x, {**inputs, "target": y}, reduction)
            return tape.gradient(out, y).numpy()  # for `none`: the gradient of the sum of the losses

        return grad_target

    def repro_for(call: str, reduce: dict[str, str]):
        def repro(args, dtype, reduction):
            q = f"t({args['pos_weight']})" if "pos_weight" in args else f"tf.constant(1, tf.{dtype})"
            text = call.format(x=f"t({args['input']})", y=f"t({args['target']})", q=q, ls=label_smoothing_arg(args))
            return repro_line(PRELUDE, TENSOR.format(dtype=dtype), reduce[reduction].format(text), ".numpy().tolist()")

        return repro

    def axis_repro(call: str):
        def repro(args, dtype, reduction):
            shape = args.get("shape", "[-1]")  # the runner passes the inputs' shape: the rows matter
            text = call.format(
                x=f"tf.reshape(t({args['input']}), {shape})", y=f"tf.reshape(t({args['target']}), {shape})",
                ls=label_smoothing_arg(args),
            )
            return repro_line(PRELUDE, TENSOR.format(dtype=dtype), keras_reduce_text[reduction].format(text), ".numpy().tolist()")

        return repro

    tf_reduce_text = {"none": "{}", "mean": "tf.reduce_mean({})", "sum": "tf.reduce_sum({})"}
    keras_reduce_text = {"none": "{}", "mean": "keras.ops.mean({})", "sum": "keras.ops.sum({})"}
    keras_name = "keras.losses.binary_crossentropy"
    no_weight = "{} has no weight argument"
    no_pos_weight = (
        "{} has no pos_weight argument (TensorFlow's pos_weight API is tf.nn.weighted_cross_entropy_with_logits)"
    )
    no_label_smoothing = "{} has no label_smoothing argument (Keras's binary_crossentropy has)"
    tf_name = "tf.nn.sigmoid_cross_entropy_with_logits"
    weighted_name = "tf.nn.weighted_cross_entropy_with_logits"

    def keras_api(
        name: str, op: str, loss, first: str, repro, unsupported: dict[str, str], variants=(), reduced_by=None, axis_mean=False
    ) -> Api:
        return Api(
            name=name,
            framework="tensorflow",
            op=op,
            call=unavailable(keras_missing) if keras is None else value(loss, first),
            grad=unavailable(keras_missing) if keras is None else gradient(loss, first),
            grad_target=unavailable(keras_missing) if keras is None else target_gradient(loss, first),
            reduced_by=reduced_by or "keras.ops.mean / keras.ops.sum over the elementwise loss (called on x[..., None])",
            repro=repro,
            unsupported=unsupported,
            variants=variants,
            axis_mean=axis_mean,
        )

    def keras_axis_api(name: str, op: str, from_logits: bool, first: str, unsupported: dict[str, str], variants=()) -> Api:
        logits_arg = ", from_logits=True" if from_logits else ""
        repro = axis_repro(f"{keras_name}({{y}}, {{x}}{logits_arg}{{ls}}, axis=-1)")
        return keras_api(
            name, op, keras_bce_axis(from_logits), first, repro, unsupported, variants, axis_reduced_by, axis_mean=True
        )

    axis_reduced_by = (
        "Keras's own mean over the last axis (none: the row means, shape input.shape[:-1]), "
        "then keras.ops.sum (sum: the sum of the row means) / keras.ops.mean (mean: the mean of the row means)"
    )

    apis = [
        Api(
            name=tf_name,
            framework="tensorflow",
            op="bce_with_logits",
            call=value(sigmoid_cross_entropy_with_logits, "logits"),
            grad=gradient(sigmoid_cross_entropy_with_logits, "logits"),
            grad_target=target_gradient(sigmoid_cross_entropy_with_logits, "logits"),
            reduced_by="tf.reduce_mean / tf.reduce_sum (the API has no reduction argument)",
            repro=repro_for(f"{tf_name}(labels={{y}}, logits={{x}})", tf_reduce_text),
            unsupported={
                "weight": no_weight.format(tf_name),
                "pos_weight": no_pos_weight.format(tf_name),
                "label_smoothing": no_label_smoothing.format(tf_name),
            },
        ),
        keras_api(
            keras_name,
            "bce",
            keras_bce(from_logits=False),
            "probs",
            repro_for(f"{keras_name}({{y}}[..., None], {{x}}[..., None]{{ls}})", keras_reduce_text),
            {"weight": no_weight.format(keras_name)},
            variants=("prob_clip(1e-7)",),
        ),
        keras_api(
            f"{keras_name}(from_logits=True)",
            "bce_with_logits",
            keras_bce(from_logits=True),
            "logits",
            repro_for(f"{keras_name}({{y}}[..., None], {{x}}[..., None], from_logits=True{{ls}})", keras_reduce_text),
            {"weight": no_weight.format(keras_name), "pos_weight": no_pos_weight.format(keras_name)},
        ),
        keras_api(
            f"tf.math.sigmoid+{keras_name}",
            "sigmoid_bce",
            keras_bce(from_logits=False, sigmoid_first=True),
            "logits",
            repro_for(f"{keras_name}({{y}}[..., None], tf.math.sigmoid({{x}})[..., None]{{ls}})", keras_reduce_text),
            {"weight": no_weight.format(keras_name), "pos_weight": no_pos_weight.format(keras_name)},
            variants=("prob_clip(1e-7)",),
        ),
        keras_axis_api(
            f"{keras_name}(axis=-1)",
            "bce",
            False,
            "probs",
            {"weight": no_weight.format(keras_name)},
            variants=("prob_clip(1e-7)",),
        ),
        keras_axis_api(
            f"{keras_name}(from_logits=True, axis=-1)",
            "bce_with_logits",
            True,
            "logits",
            {"weight": no_weight.format(keras_name), "pos_weight": no_pos_weight.format(keras_name)},
        ),
        Api(
            name=weighted_name,
            framework="tensorflow",
            op="bce_with_logits",
            call=value(weighted_cross_entropy_with_logits, "logits"),
            grad=gradient(weighted_cross_entropy_with_logits, "logits"),
            grad_target=target_gradient(weighted_cross_entropy_with_logits, "logits"),
            reduced_by="tf.reduce_mean / tf.reduce_sum (the API has no reduction argument)",
            repro=repro_for(f"{weighted_name}(labels={{y}}, logits={{x}}, pos_weight={{q}})", tf_reduce_text),
            unsupported={
                "weight": f"{weighted_name} has no weight argument (only pos_weight)",
                "label_smoothing": no_label_smoothing.format(weighted_name),
            },
        ),
    ]
    on_gpu = {}
    if placement.startswith("/GPU"):  # the GPU's name and TF32 (tensorflow.org/api_docs: enable_tensor_float_32_execution)
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[index])
        driver = devices.nvidia_driver(index)
        on_gpu = {
            "device_name": str(details.get("device_name", "")),
            "tensor_float_32_execution": str(tf.config.experimental.tensor_float_32_execution_enabled()),
            **({"driver": driver} if driver else {}),
        }
    versions, settings = describe(keras, {"tensorflow": tf.__version__}, on_gpu)
    multiply = lambda values, factor: (tf.constant(values) * tf.constant(factor, dtype=values.dtype)).numpy()
    if any_gpu:  # the ops where asked, the CPU too: TensorFlow would put them on its first GPU
        apis = [
            replace(api, call=_placed(tf, placement, api.call), grad=_placed(tf, placement, api.grad),
                    grad_target=_placed(tf, placement, api.grad_target))
            for api in apis
        ]  # fmt: skip
        multiply = _placed(tf, placement, multiply)
    with tf.device(placement):
        where = tf.constant(0.0).device
    return Framework(
        name="tensorflow",
        versions=versions,
        apis=apis,
        settings=settings,
        device=where,
        multiply=multiply,  # on the device: its FTZ / DAZ
    )
