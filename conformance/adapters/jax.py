"""JAX: ``optax.losses.sigmoid_binary_cross_entropy`` on logits; on probabilities, where JAX has no
BCE API, the idiomatic composition ``-(xlogy(y, p) + xlog1py(1 - y, -p))`` from ``jax.scipy.special``
(which gives 0·log 0 = 0), and ``jax.nn.sigmoid`` before it for the two-step path.

float64 needs x64 mode, which this adapter turns on (without it float64 silently becomes float32).
None of these takes a reduction argument: mean and sum are ``jax.numpy.mean`` / ``jax.numpy.sum``.
optax computes ``-y·log_sigmoid(x) - (1-y)·log_sigmoid(-x)``
(optax/losses/_classification.py :: sigmoid_binary_cross_entropy).
"""

from __future__ import annotations

from conformance.adapters import Api, Framework, repro_line

PRELUDE = "import jax; jax.config.update('jax_enable_x64', True); import jax.numpy as jnp, jax.scipy.special as jss, optax"
TENSOR = "lambda v: jnp.asarray([float.fromhex(h) for h in v], dtype=jnp.{dtype})"
XLOGY_BCE = "-({w}(jss.xlogy({y}, {p}) + jss.xlog1py(1 - {y}, -{p})))"


def load() -> Framework:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jax.scipy.special as jss
    import jaxlib
    import numpy as np
    import optax

    if not jax.config.jax_enable_x64:
        raise RuntimeError("JAX refused x64 mode: float64 cases would silently run in float32")

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

    def value(loss, first: str):
        return lambda inputs, reduction: np.asarray(loss(jnp.asarray(inputs[first]), inputs, reduction))

    def gradient(loss, first: str):
        def grad(inputs, reduction):  # jax.grad, as a user would; for `none` of the sum of the losses
            return np.asarray(jax.grad(lambda x: jnp.sum(loss(x, inputs, reduction)))(jnp.asarray(inputs[first])))

        return grad

    reduce_text = {"none": "{}", "mean": "jnp.mean({})", "sum": "jnp.sum({})"}

    def repro_for(template: str, sigmoid_first: bool = False):
        def repro(args, dtype, reduction):
            x = f"t({args['input']})"
            fields = {
                "x": x,
                "y": f"t({args['target']})",
                "p": f"jax.nn.sigmoid({x})" if sigmoid_first else x,
                "w": f"t({args['weight']}) * " if "weight" in args else "",
            }
            return repro_line(PRELUDE, TENSOR.format(dtype=dtype), reduce_text[reduction].format(template.format(**fields)))

        return repro

    optax_name = "optax.losses.sigmoid_binary_cross_entropy"
    xlogy_name = "jax.scipy.special.xlogy+jax.scipy.special.xlog1py"
    reduced_by = "jax.numpy.mean / jax.numpy.sum (the API has no reduction argument)"
    no_pos_weight = "{} has no pos_weight argument"
    apis = [
        Api(
            name=optax_name,
            framework="jax",
            op="bce_with_logits",
            call=value(sigmoid_binary_cross_entropy, "logits"),
            grad=gradient(sigmoid_binary_cross_entropy, "logits"),
            reduced_by=reduced_by,
            repro=repro_for(f"{optax_name}({{x}}, {{y}})"),
            unsupported={
                "weight": f"{optax_name} has no weight argument",
                "pos_weight": no_pos_weight.format(optax_name),
            },
        ),
        Api(
            name=xlogy_name,
            framework="jax",
            op="bce",
            call=value(composed(sigmoid_first=False), "probs"),
            grad=gradient(composed(sigmoid_first=False), "probs"),
            reduced_by=reduced_by,
            repro=repro_for(XLOGY_BCE),
        ),
        Api(
            name=f"jax.nn.sigmoid+{xlogy_name}",
            framework="jax",
            op="sigmoid_bce",
            call=value(composed(sigmoid_first=True), "logits"),
            grad=gradient(composed(sigmoid_first=True), "logits"),
            reduced_by=reduced_by,
            repro=repro_for(XLOGY_BCE, sigmoid_first=True),
            unsupported={"pos_weight": no_pos_weight.format(xlogy_name)},
        ),
    ]
    return Framework(
        name="jax",
        versions={"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__},
        apis=apis,
        settings={"jax_enable_x64": "True"},
    )
