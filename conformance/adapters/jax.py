"""JAX: ``optax.losses.sigmoid_binary_cross_entropy`` on logits; on probabilities, where JAX has no
BCE API, the idiomatic composition ``-(xlogy(y, p) + xlog1py(1 - y, -p))`` from ``jax.scipy.special``
(which gives 0·log 0 = 0), and ``jax.nn.sigmoid`` before it for the two-step path.

Every call runs under ``jax.jit``, as a training step does, the inputs passed as the jitted function's
arguments; the reproducers do the same. That is not a detail: XLA compiles a jitted loss into one fused
kernel, and eager mode dispatches each primitive as a kernel of its own (jax/_src/dispatch.py ::
apply_primitive), with another vectorisation of the same elementwise code. On float32 probabilities the
two differ: ``xlogy(1, 0x1p-149)`` is 103.97 eagerly (7 elements), inf jitted (the subnormal read as 0),
and 103.28 when jitted on constants (XLA folds them at compile time). ``docs/jax-jit.md`` lists every
result of the suite that jit changes.

float64 needs x64 mode, which this adapter turns on (without it float64 silently becomes float32).
None of these takes a reduction argument: mean and sum are ``jax.numpy.mean`` / ``jax.numpy.sum``.
optax computes ``-y·log_sigmoid(x) - (1-y)·log_sigmoid(-x)``
(optax/losses/_classification.py :: sigmoid_binary_cross_entropy).

Keras 3 on its JAX backend, as APIs of their own: ``keras.losses.binary_crossentropy[jax]`` and
``keras.losses.binary_crossentropy(from_logits=True)[jax]``, called on ``x[..., None]`` (its mean over
the last axis is then elementwise) and reduced by ``keras.ops.mean`` / ``keras.ops.sum``; gradients
through jax.grad. keras/src/backend/jax/nn.py :: binary_crossentropy clips p to [ε, 1-ε],
ε = keras.config.epsilon() = 1e-7, then computes ``-(y·log p + (1-y)·log(1-p))`` (no clamp), and with
``from_logits=True`` ``-y·log_sigmoid(x) - (1-y)·log_sigmoid(-x)``. Both take ``label_smoothing``
(keras/src/losses/losses.py :: binary_crossentropy: y·(1 - ls) + 0.5·ls, in the dtype). Keras picks
its backend once per process: see conformance/adapters/keras_backend.py.
"""

from __future__ import annotations

from conformance.adapters import Api, Framework, label_smoothing, repro_line
from conformance.adapters.keras_backend import backend_apis, describe, import_keras, keras_repro as make_keras_repro

PRELUDE = "import jax; jax.config.update('jax_enable_x64', True); import jax.numpy as jnp, jax.scipy.special as jss, optax"
TENSOR = "lambda v: jnp.asarray([float.fromhex(h) for h in v], dtype=jnp.{dtype})"
XLOGY_BCE = "-({w}(jss.xlogy({y}, {p}) + jss.xlog1py(1 - {y}, -{p})))"
KERAS_PRELUDE = (
    "import os; os.environ['KERAS_BACKEND'] = 'jax'; import jax; jax.config.update('jax_enable_x64', True); "
    "import jax.numpy as jnp, keras"
)


def jitted_call(expression: str, tensors: dict[str, str]) -> str:
    """A reproducer's call as the adapter makes it: ``expression`` (in the names of ``tensors``) under jax.jit,
    the tensors passed as arguments: a jitted function of constants alone would be folded by XLA at compile
    time, by another implementation than the kernels the adapter's calls run."""
    names = ", ".join(tensors)
    return f"jax.jit(lambda {names}: {expression})({', '.join(tensors.values())})"


def use_compilation_cache(jax) -> None:
    """JAX's persistent compilation cache (jax/_src/compilation_cache.py), every executable kept however quick
    its compile: a run after the first loads the jitted kernels instead of compiling them again
    (benchmarks/main_job.py measures what that saves). The folder is ``conformance.cache.compilation_folder("jax")``, unless the user chose one
    (``JAX_COMPILATION_CACHE_DIR``); none with ``CONFORMANCE_CACHE=off``. A cached executable is the one the
    compile made, so results are the same bytes with the cache or without."""
    from conformance import cache

    if jax.config.jax_compilation_cache_dir:  # the user's own (JAX_COMPILATION_CACHE_DIR): theirs to keep
        return
    folder = cache.compilation_folder("jax")
    if folder is None:
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _device(jax, device: str):
    """The JAX device of ``--device``: ``cpu``, or ``gpu[:N]`` where JAX has a GPU backend with that device;
    else the error naming the devices there (``conformance.devices``)."""
    from conformance import devices

    backends = {}
    for platform in ("cpu", "gpu"):
        try:
            backends[platform] = jax.devices(platform)
        except RuntimeError:  # jax.devices raises for a backend it does not have (a CPU-only jaxlib: "gpu")
            backends[platform] = []
    available = [f"{platform}:{i}" for platform, found in backends.items() for i in range(len(found))]
    kind, index = devices.parse("jax", device, ("cpu", "gpu"), available)
    if index >= len(backends[kind]):
        why = f"jax {jax.__version__} has {len(backends[kind])} {kind} device{'s' * (len(backends[kind]) != 1)}"
        raise devices.absent("jax", device, available, why)
    return backends[kind][index]


def _device_settings(chosen) -> dict[str, str]:
    """A GPU's name and NVIDIA driver, for the record (its platform version and JAX's default matmul precision
    are the numerics record's: conformance.numerics); nothing on the CPU, whose record is what it always was."""
    if chosen.platform == "cpu":
        return {}
    from conformance import devices

    driver = devices.nvidia_driver(chosen.id)
    return {"device_name": str(chosen.device_kind), **({"driver": driver} if driver else {})}


def load(device: str = "cpu") -> Framework:
    import jax

    jax.config.update("jax_enable_x64", True)
    chosen = _device(jax, device)
    if chosen != jax.devices()[0]:  # not the default backend's first device: every array and computation there
        jax.config.update("jax_default_device", chosen)
    import jax.numpy as jnp
    import jax.scipy.special as jss
    import jaxlib
    import numpy as np
    import optax

    if not jax.config.jax_enable_x64:
        raise RuntimeError("JAX refused x64 mode: float64 cases would silently run in float32")
    use_compilation_cache(jax)
    keras, keras_missing = import_keras("jax", "jax")

    reduce = {"none": lambda v: v, "mean": jnp.mean, "sum": jnp.sum}

    # each loss takes its first input as an array, so that the same code serves the value and the gradient
    def sigmoid_binary_cross_entropy(x, inputs, reduction):
        return reduce[reduction](optax.losses.sigmoid_binary_cross_entropy(x, jnp.asarray(inputs["target"])))

    def xlogy_bce(p, y, weight):
        loss = -(jss.xlogy(y, p) + jss.xlog1py(1 - y, -p))
        return loss if weight is None else weight * loss

    def composed(sigmoid_first: bool):
        def loss(first, inputs, reduction):
            weight = jnp.asarray(inputs["weight"]) if "weight" in inputs else None
            p = jax.nn.sigmoid(first) if sigmoid_first else first
            return reduce[reduction](xlogy_bce(p, jnp.asarray(inputs["target"]), weight))

        return loss

    def keras_bce(from_logits: bool):
        def loss(first, inputs, reduction):
            y = jnp.asarray(inputs["target"])
            out = keras.losses.binary_crossentropy(
                y[..., None], first[..., None], from_logits=from_logits, label_smoothing=label_smoothing(inputs)
            )
            return {"none": lambda v: v, "mean": keras.ops.mean, "sum": keras.ops.sum}[reduction](out)

        return loss

    # Each call runs under jax.jit, as a training step does: compiled once per (API, quantity, reduction,
    # label smoothing) and input shape, where eager dispatch compiles every primitive of the loss and its
    # backward pass once per shape (JAX's eager mode jits each primitive alone: jax/_src/dispatch.py ::
    # apply_primitive), about five times the compile work for the same kernels. The label smoothing is a
    # Python float the API takes, so it stays static; the arrays are the jitted function's arguments.
    def jitted(function):
        compiled = jax.jit(function, static_argnums=(2, 3))

        def run(first: str, inputs, reduction):
            arrays = {name: a for name, a in inputs.items() if name != "label_smoothing"}
            smoothing = label_smoothing(inputs) if "label_smoothing" in inputs else None
            return np.asarray(compiled(jnp.asarray(inputs[first]), arrays, reduction, smoothing))

        return run

    def with_smoothing(arrays, smoothing):
        return arrays if smoothing is None else {**arrays, "label_smoothing": smoothing}

    def value(loss, first: str):
        run = jitted(lambda x, arrays, reduction, smoothing: loss(x, with_smoothing(arrays, smoothing), reduction))
        return lambda inputs, reduction: run(first, inputs, reduction)

    def gradient(loss, first: str):
        # jax.grad, as a user would; for `none` of the sum of the losses
        def traced(x, arrays, reduction, smoothing):
            return jax.grad(lambda v: jnp.sum(loss(v, with_smoothing(arrays, smoothing), reduction)))(x)

        run = jitted(traced)
        return lambda inputs, reduction: run(first, inputs, reduction)

    def target_gradient(loss, first: str):
        # jax.grad with respect to the target (the first argument of the jitted function is then the target)
        def traced(y, arrays, reduction, smoothing):
            inputs = with_smoothing(arrays, smoothing)
            return jax.grad(lambda v: jnp.sum(loss(jnp.asarray(inputs[first]), {**inputs, "target": v}, reduction)))(y)

        run = jitted(traced)
        return lambda inputs, reduction: run("target", inputs, reduction)

    reduce_text = {"none": "{}", "mean": "jnp.mean({})", "sum": "jnp.sum({})"}

    def repro_for(template: str, sigmoid_first: bool = False):
        def repro(args, dtype, reduction):
            fields = {"x": "x", "y": "y", "p": "jax.nn.sigmoid(x)" if sigmoid_first else "x", "w": "w * " if "weight" in args else ""}
            tensors = {"x": f"t({args['input']})", "y": f"t({args['target']})"}
            if "weight" in args:
                tensors["w"] = f"t({args['weight']})"
            call = jitted_call(reduce_text[reduction].format(template.format(**fields)), tensors)
            return repro_line(PRELUDE, TENSOR.format(dtype=dtype), call)

        return repro

    keras_repro = make_keras_repro(KERAS_PRELUDE, TENSOR, jit=jitted_call)

    optax_name = "optax.losses.sigmoid_binary_cross_entropy"
    xlogy_name = "jax.scipy.special.xlogy+jax.scipy.special.xlog1py"
    reduced_by = "jax.numpy.mean / jax.numpy.sum (the API has no reduction argument)"
    no_pos_weight = "{} has no pos_weight argument"
    no_label_smoothing = "{} has no label_smoothing argument (Keras's binary_crossentropy has)"
    apis = [
        Api(
            name=optax_name,
            framework="jax",
            op="bce_with_logits",
            call=value(sigmoid_binary_cross_entropy, "logits"),
            grad=gradient(sigmoid_binary_cross_entropy, "logits"),
            grad_target=target_gradient(sigmoid_binary_cross_entropy, "logits"),
            reduced_by=reduced_by,
            repro=repro_for(f"{optax_name}({{x}}, {{y}})"),
            unsupported={
                "weight": f"{optax_name} has no weight argument",
                "pos_weight": no_pos_weight.format(optax_name),
                "label_smoothing": no_label_smoothing.format(optax_name),
            },
        ),
        Api(
            name=xlogy_name,
            framework="jax",
            op="bce",
            call=value(composed(sigmoid_first=False), "probs"),
            grad=gradient(composed(sigmoid_first=False), "probs"),
            grad_target=target_gradient(composed(sigmoid_first=False), "probs"),
            reduced_by=reduced_by,
            repro=repro_for(XLOGY_BCE),
            unsupported={"label_smoothing": no_label_smoothing.format(xlogy_name)},
        ),
        Api(
            name=f"jax.nn.sigmoid+{xlogy_name}",
            framework="jax",
            op="sigmoid_bce",
            call=value(composed(sigmoid_first=True), "logits"),
            grad=gradient(composed(sigmoid_first=True), "logits"),
            grad_target=target_gradient(composed(sigmoid_first=True), "logits"),
            reduced_by=reduced_by,
            repro=repro_for(XLOGY_BCE, sigmoid_first=True),
            unsupported={
                "pos_weight": no_pos_weight.format(xlogy_name),
                "label_smoothing": no_label_smoothing.format(xlogy_name),
            },
        ),
    ]
    # the backend clips p; no clamp of the log
    apis += backend_apis("jax", keras, keras_missing, value, gradient, keras_bce, keras_repro, ("prob_clip(1e-7)",), target_gradient)
    versions, settings = describe(
        keras,
        {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__},
        {"jax_enable_x64": "True", **_device_settings(chosen)},
    )
    return Framework(
        name="jax",
        versions=versions,
        apis=apis,
        settings=settings,
        device=str(chosen),
        multiply=lambda values, factor: np.asarray(jnp.asarray(values) * jnp.asarray(factor, dtype=values.dtype)),
    )
