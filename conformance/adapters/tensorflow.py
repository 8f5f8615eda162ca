"""TensorFlow: ``tf.nn.sigmoid_cross_entropy_with_logits`` and Keras 3's ``keras.losses.binary_crossentropy``
(on probabilities, and with ``from_logits=True``), on Keras's TensorFlow backend.

None of these takes a reduction argument: mean and sum are ``tf.reduce_mean`` / ``tf.reduce_sum``
and ``keras.ops.mean`` / ``keras.ops.sum``. ``keras.losses.binary_crossentropy`` averages over the
last axis (keras/src/losses/losses.py :: binary_crossentropy), so it is called on ``x[..., None]``:
a last axis of one element, which makes its result elementwise. Semantics:
- ``tf.nn.sigmoid_cross_entropy_with_logits``: ``max(x,0) - x·z + log1p(exp(-|x|))``
  (tensorflow/python/ops/nn_impl.py :: sigmoid_cross_entropy_with_logits).
- Keras, probabilities: clips p to [ε, 1-ε], ε = keras.config.epsilon() = 1e-7
  (keras/src/backend/tensorflow/nn.py :: binary_crossentropy); with ``from_logits=True`` it calls
  ``tf.nn.sigmoid_cross_entropy_with_logits``.
"""

from __future__ import annotations

import os

from conformance.adapters import Api, Framework, repro_line

PRELUDE = "import tensorflow as tf, keras"
TENSOR = "lambda v: tf.constant([float.fromhex(h) for h in v], dtype=tf.{dtype})"


def load() -> Framework:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"Keras runs on the {keras.backend.backend()!r} backend; this adapter needs 'tensorflow'")

    tf_reduce = {"none": lambda v: v, "mean": tf.reduce_mean, "sum": tf.reduce_sum}
    keras_reduce = {"none": lambda v: v, "mean": keras.ops.mean, "sum": keras.ops.sum}

    # each loss takes its first input as a tensor, so that the same code serves the value and the gradient
    def sigmoid_cross_entropy_with_logits(x, inputs, reduction):
        y = tf.constant(inputs["target"])
        return tf_reduce[reduction](tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x))

    def keras_bce(from_logits: bool, sigmoid_first: bool = False):
        def loss(first, inputs, reduction):
            if sigmoid_first:
                first = tf.math.sigmoid(first)  # eager: Keras sees a plain tensor, not sigmoid logits
            y = tf.constant(inputs["target"])
            out = keras.losses.binary_crossentropy(y[..., None], first[..., None], from_logits=from_logits)
            return keras_reduce[reduction](out)  # a tf.Tensor on this backend

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

    def repro_for(call: str, reduce: dict[str, str]):
        def repro(args, dtype, reduction):
            text = call.format(x=f"t({args['input']})", y=f"t({args['target']})")
            return repro_line(PRELUDE, TENSOR.format(dtype=dtype), reduce[reduction].format(text), ".numpy().tolist()")

        return repro

    tf_reduce_text = {"none": "{}", "mean": "tf.reduce_mean({})", "sum": "tf.reduce_sum({})"}
    keras_reduce_text = {"none": "{}", "mean": "keras.ops.mean({})", "sum": "keras.ops.sum({})"}
    keras_name = "keras.losses.binary_crossentropy"
    no_weight = "{} has no weight argument"
    no_pos_weight = (
        "{} has no pos_weight argument (TensorFlow's pos_weight API is tf.nn.weighted_cross_entropy_with_logits)"
    )
    tf_name = "tf.nn.sigmoid_cross_entropy_with_logits"
    apis = [
        Api(
            name=tf_name,
            framework="tensorflow",
            op="bce_with_logits",
            call=value(sigmoid_cross_entropy_with_logits, "logits"),
            grad=gradient(sigmoid_cross_entropy_with_logits, "logits"),
            reduced_by="tf.reduce_mean / tf.reduce_sum (the API has no reduction argument)",
            repro=repro_for(f"{tf_name}(labels={{y}}, logits={{x}})", tf_reduce_text),
            unsupported={"weight": no_weight.format(tf_name), "pos_weight": no_pos_weight.format(tf_name)},
        ),
        Api(
            name=keras_name,
            framework="tensorflow",
            op="bce",
            call=value(keras_bce(from_logits=False), "probs"),
            grad=gradient(keras_bce(from_logits=False), "probs"),
            reduced_by="keras.ops.mean / keras.ops.sum over the elementwise loss (called on x[..., None])",
            repro=repro_for(f"{keras_name}({{y}}[..., None], {{x}}[..., None])", keras_reduce_text),
            unsupported={"weight": no_weight.format(keras_name)},
            variants=("prob_clip(1e-7)",),
        ),
        Api(
            name=f"{keras_name}(from_logits=True)",
            framework="tensorflow",
            op="bce_with_logits",
            call=value(keras_bce(from_logits=True), "logits"),
            grad=gradient(keras_bce(from_logits=True), "logits"),
            reduced_by="keras.ops.mean / keras.ops.sum over the elementwise loss (called on x[..., None])",
            repro=repro_for(f"{keras_name}({{y}}[..., None], {{x}}[..., None], from_logits=True)", keras_reduce_text),
            unsupported={"weight": no_weight.format(keras_name), "pos_weight": no_pos_weight.format(keras_name)},
        ),
        Api(
            name=f"tf.math.sigmoid+{keras_name}",
            framework="tensorflow",
            op="sigmoid_bce",
            call=value(keras_bce(from_logits=False, sigmoid_first=True), "logits"),
            grad=gradient(keras_bce(from_logits=False, sigmoid_first=True), "logits"),
            reduced_by="keras.ops.mean / keras.ops.sum over the elementwise loss (called on x[..., None])",
            repro=repro_for(f"{keras_name}({{y}}[..., None], tf.math.sigmoid({{x}})[..., None])", keras_reduce_text),
            unsupported={"weight": no_weight.format(keras_name), "pos_weight": no_pos_weight.format(keras_name)},
            variants=("prob_clip(1e-7)",),
        ),
    ]
    return Framework(
        name="tensorflow",
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
        apis=apis,
        settings={"keras_backend": keras.backend.backend(), "keras_epsilon": repr(keras.config.epsilon())},
    )
