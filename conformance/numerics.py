"""The numerics environment: what, besides the versions, decides a framework's floating-point results on a host.

The same numpy on two x86-64 machines can give two answers: numpy picks its SIMD kernels at import time
from the CPU's features (on Linux x86-64 its float64 ``exp`` / ``log`` are SVML's AVX-512 kernels, used where
the ``X86_V4`` dispatch target is found, elsewhere the C library's: see ``numpy_simd``), torch picks its ATen
kernels by CPU capability and sums in as many threads as it has, TensorFlow may route ops through oneDNN, XLA
compiles for the host's instruction set. This module records those facts as one flat mapping,
``field -> value`` (a str, an int, a bool, or a sorted list of str), the environment record's
``numerics``:

- ``cpu.flags``: the CPU flags that select kernels (avx2, avx512f, fma, ...), from /proc/cpuinfo;
- ``numpy.simd_baseline`` / ``numpy.simd_found`` / ``numpy.simd_not_found``: what ``np.show_runtime()``
  prints under ``simd_extensions`` (the dispatch targets found are the ones numpy uses);
- ``env.<VARIABLE>``: the environment variables that change a dispatch (``NPY_DISABLE_CPU_FEATURES``,
  ``ATEN_CPU_CAPABILITY``, ``TF_ENABLE_ONEDNN_OPTS``, ``XLA_FLAGS``, ...), where set;
- per framework that the run imported (never imported here): see ``FRAMEWORK_PROBES``.

A known-divergence entry may hold only where a field has a value (``when:``, see ``parse_condition``),
and ``diff`` names the fields that changed between a baseline and the current run (``changes``).
Nothing here depends on the time: the same host and settings give the same record.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the CPU flags (Linux /proc/cpuinfo names) that decide which kernels numpy, oneDNN, ATen and XLA take
CPU_FLAGS = (
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16", "avx512_vnni",
    "amx_bf16", "amx_fp16", "amx_tile",
    "asimd", "asimdhp", "fphp", "bf16", "sve", "sve2",
)  # fmt: skip
# environment variables that change a library's dispatch or precision, recorded where set
ENVIRONMENT_VARIABLES = (
    "NPY_DISABLE_CPU_FEATURES",
    "NPY_ENABLE_CPU_FEATURES",
    "ATEN_CPU_CAPABILITY",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_NUM_INTRAOP_THREADS",
    "XLA_FLAGS",
    "JAX_DEFAULT_MATMUL_PRECISION",
    "JAX_ENABLE_X64",
)

# field -> how a person reads it (the run header, the report, the diff); a `when:` may name only these
FIELDS: dict[str, str] = {
    "cpu.flags": "CPU flags",
    "numpy.simd_baseline": "numpy SIMD baseline",
    "numpy.simd_found": "numpy SIMD dispatch found",
    "numpy.simd_not_found": "numpy SIMD dispatch not found",
    "torch.cpu_capability": "torch CPU capability",
    "torch.threads": "torch threads",
    "torch.interop_threads": "torch inter-op threads",
    "torch.mkldnn": "torch oneDNN (mkldnn)",
    "tensorflow.onednn": "TensorFlow oneDNN",
    "tensorflow.intra_op_threads": "TensorFlow intra-op threads",
    "tensorflow.inter_op_threads": "TensorFlow inter-op threads",
    "jax.backend": "JAX backend",
    "jax.device_kind": "JAX device",
    "jax.platform_version": "XLA platform",
    "jax.matmul_precision": "JAX default matmul precision",
    "jax.xla_cpu_fast_math": "XLA CPU fast math",
    **{f"env.{name}": f"${name}" for name in ENVIRONMENT_VARIABLES},
}

Value = str | int | bool | list[str]


def _cpu_flags(cpuinfo: str) -> list[str]:
    """The flags of ``CPU_FLAGS`` the first processor of a /proc/cpuinfo text lists (x86 ``flags``, arm ``Features``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            present = set(value.split())
            return sorted(flag for flag in CPU_FLAGS if flag in present)
    return []


def cpu_flags() -> list[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None  # not Linux: unknown, not empty
    return _cpu_flags(text)


def numpy_simd() -> dict[str, Value]:
    """numpy's SIMD baseline and dispatch, computed as ``np.show_runtime()`` does
    (numpy/lib/_utils_impl.py::show_runtime: a dispatch target is found where ``__cpu_features__`` has it).

    Why ``X86_V4`` matters (numpy v2.4.6, numpy/_core/src/umath/loops_exponent_log.dispatch.c.src, built for
    ``X86_V4, X86_V3`` in numpy/_core/meson.build): ``DOUBLE_exp`` / ``DOUBLE_log`` call ``__svml_exp8_ha`` /
    ``__svml_log8_ha`` under ``NPY_HAVE_AVX512_SKX && NPY_CAN_LINK_SVML`` (SVML is linked on Linux x86-64 only),
    else the AVX-512F ``AVX512F_exp_DOUBLE`` / ``AVX512F_log_DOUBLE`` (numpy 1.19 / 1.20), else ``npy_exp`` /
    ``npy_log`` (libm). float32 ``exp`` / ``log`` have AVX512F and AVX2+FMA3 kernels of one algorithm ("Max ULP
    error measured across all 32-bit FP's = 2.52" / "= 3.83", the same in doc/source/release/1.17.0-notes.rst);
    numpy documents no ULP bound for float64 beyond its accuracy test (umath-validation-set-exp/log.csv: 1 ULP).
    ``log1p`` (float32 and float64, with exp2, log2, expm1, ...) is SVML's under the same condition
    (numpy/_core/src/umath/loops_umath_fp.dispatch.c.src), else libm's: the stable logits formula's last bits
    move with it."""
    try:
        from numpy._core import _multiarray_umath as umath  # numpy 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import _multiarray_umath as umath
    baseline = getattr(umath, "__cpu_baseline__", None)
    dispatch = getattr(umath, "__cpu_dispatch__", None)
    features = getattr(umath, "__cpu_features__", None)
    if baseline is None or dispatch is None or features is None:
        return {}
    return {
        "numpy.simd_baseline": list(baseline),
        "numpy.simd_found": [name for name in dispatch if features.get(name)],
        "numpy.simd_not_found": [name for name in dispatch if not features.get(name)],
    }


def torch_numerics(torch) -> dict[str, Value]:
    """ATen's CPU kernels are chosen by capability, its reductions split over its intra-op threads.

    aten/src/ATen/native/DispatchStub.cpp::compute_cpu_capability: ``ATEN_CPU_CAPABILITY`` (``avx512``, ``avx2``,
    ``default``) wins, else AVX512 where "cpuinfo_has_x86_avx512vl() && cpuinfo_has_x86_avx512bw() &&
    cpuinfo_has_x86_avx512dq() && cpuinfo_has_x86_fma3()", else AVX2 (avx2 and fma3), else DEFAULT; it is computed
    once. ``torch.backends.cpu.get_cpu_capability()`` returns it ("DEFAULT", "VSX", "Z VECTOR", "NO AVX", "AVX2",
    "AVX512", "SVE256"). ``torch.mkldnn``: oneDNN built in and not switched off (``torch.backends.mkldnn.enabled``)."""
    mkldnn = torch.backends.mkldnn
    return {
        "torch.cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "torch.threads": int(torch.get_num_threads()),
        "torch.interop_threads": int(torch.get_num_interop_threads()),
        "torch.mkldnn": bool(mkldnn.is_available() and mkldnn.enabled),
    }


def tensorflow_numerics(tf) -> dict[str, Value]:
    """Whether TensorFlow routes ops through oneDNN, and its thread pools (0: TensorFlow's default).

    tensorflow/core/util/port.cc::IsMklEnabled (util.cc::IsMKLEnabled forwards to it; Python:
    ``_pywrap_util_port.IsMklEnabled``): ``TF_ENABLE_ONEDNN_OPTS`` read once per process, else
    ``DefaultOneDnnPolicy``, which on Linux is on only for CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX
    (or an ARM Neoverse V1), and needs a build with INTEL_MKL. On: "You may see slightly different numerical
    results due to floating-point round-off errors from different computation orders"."""
    util_port = sys.modules.get("tensorflow.python.util._pywrap_util_port")
    if util_port is None:  # loaded by every TensorFlow 2 import; a lookup of the submodule, not a new framework
        from tensorflow.python.util import _pywrap_util_port as util_port
    return {
        "tensorflow.onednn": bool(util_port.IsMklEnabled()),
        "tensorflow.intra_op_threads": int(tf.config.threading.get_intra_op_parallelism_threads()),
        "tensorflow.inter_op_threads": int(tf.config.threading.get_inter_op_parallelism_threads()),
    }


def _xla_cpu_fast_math(jax) -> bool | None:
    """XLA's ``xla_cpu_enable_fast_math`` as JAX compiles with it: the DebugOptions of a fresh CompileOptions,
    which XLA fills from ``XLA_FLAGS`` (xla/debug_options_flags.cc::DefaultDebugOptionsIgnoringFlags: "false").
    The CompileOptions must outlive the read: a DebugOptions of a temporary one reads freed memory."""
    try:
        options = jax._src.lib.xla_client.CompileOptions()
        debug = options.executable_build_options.debug_options
        return bool(debug.xla_cpu_enable_fast_math)
    except AttributeError:  # another jaxlib's layout: unknown, not recorded
        return None


def jax_numerics(jax) -> dict[str, Value]:
    """XLA's backend and device, its platform version, JAX's default matmul precision ("default" where unset) and
    whether XLA's CPU fast math is on. The ISA XLA compiles for is not readable from Python: it is the host's
    (``cpu.flags``), capped by ``--xla_cpu_max_isa`` in ``XLA_FLAGS`` (recorded with the variables; default "" on
    x86, "NEON" on AArch64, xla/debug_options_flags.cc::DefaultMaxIsa). ``device.client.platform_version`` is
    jax 0.10.2's (also ``jax.extend.backend.get_backend().platform_version``, but that needs an import)."""
    device = jax.devices()[0]
    precision = jax.config.jax_default_matmul_precision
    record: dict[str, Value] = {
        "jax.backend": str(jax.default_backend()),
        "jax.device_kind": str(device.device_kind),
        "jax.platform_version": str(device.client.platform_version),
        "jax.matmul_precision": "default" if precision is None else str(precision),
    }
    fast_math = _xla_cpu_fast_math(jax)
    if fast_math is not None:
        record["jax.xla_cpu_fast_math"] = fast_math
    return record


# framework module -> probe of what decides its numerics; run only where the run imported the module
FRAMEWORK_PROBES: dict[str, Callable[[Any], dict[str, Value]]] = {
    "torch": torch_numerics,
    "tensorflow": tensorflow_numerics,
    "jax": jax_numerics,
}


def probe(modules: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> dict[str, Value]:
    """This host's numerics record: the CPU flags, numpy's SIMD dispatch, the variables set, and a probe of
    each framework in ``FRAMEWORK_PROBES`` already imported (``modules``: sys.modules). A probe that
    raises records ``<framework>.probe`` saying so, never stops the run."""
    modules = sys.modules if modules is None else modules
    environ = os.environ if environ is None else environ
    record: dict[str, Value] = {}
    flags = cpu_flags()
    if flags is not None:
        record["cpu.flags"] = flags
    record.update(numpy_simd())
    for name in ENVIRONMENT_VARIABLES:
        if name in environ:
            record[f"env.{name}"] = environ[name]
    for name, framework_probe in FRAMEWORK_PROBES.items():
        if name in modules:
            try:
                record.update(framework_probe(modules[name]))
            except Exception as exc:  # noqa: BLE001 - an unreadable setting is recorded as such, never stops the run
                record[f"{name}.probe"] = f"raised {type(exc).__name__}: {exc}".splitlines()[0]
    return dict(sorted(record.items()))


def label(field: str) -> str:
    return FIELDS.get(field, field)


def text(value: Value | None) -> str:
    if value is None:
        return "(not recorded)"
    if isinstance(value, list):
        return ", ".join(value) if value else "(none)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def summary(record: dict[str, Value]) -> str:
    """One line: ``CPU flags avx2, fma; numpy SIMD dispatch found X86_V3, X86_V4; ...``."""
    return "; ".join(f"{label(field)} {text(value)}" for field, value in record.items()) or "(not recorded)"


def changes(before: dict[str, Value] | None, after: dict[str, Value] | None) -> list[str]:
    """What changed between two numerics records, a line per field:
    ``numpy SIMD dispatch found: X86_V3, X86_V4, AVX512_ICL → X86_V3``. A side without a record gives one
    line saying so (results taken before the numerics were recorded), unless neither has one."""
    if before is None and after is None:
        return []
    if before is None or after is None:
        side = "the baseline" if before is None else "the current run"
        return [f"numerics environment not recorded in {side}"]
    return [
        f"{label(field)}: {text(before.get(field))} → {text(after.get(field))}"
        for field in sorted(before.keys() | after.keys())
        if before.get(field) != after.get(field)
    ]


# ---------------------------------------------------------------------------------------------
# conditions: a known divergence's `when:`

OPERATORS = {
    # operator -> (holds(recorded value, operand), how it reads)
    "has": (lambda value, operand: isinstance(value, list) and operand in value, "has"),
    "lacks": (lambda value, operand: isinstance(value, list) and operand not in value, "lacks"),
    "is": (lambda value, operand: not isinstance(value, list) and value == operand, "is"),
    "is_not": (lambda value, operand: not isinstance(value, list) and value != operand, "is not"),
}


class ConditionError(ValueError):
    """A malformed ``when:``; the message names the field (``when.<field>``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Term:
    field: str
    operator: str
    operand: str | int | bool

    def holds(self, record: dict[str, Value]) -> bool:
        """Whether the recorded value satisfies it; a field the record lacks satisfies no term (unknown is
        never assumed either way)."""
        return self.field in record and OPERATORS[self.operator][0](record[self.field], self.operand)

    def __str__(self) -> str:
        return f"{label(self.field)} {OPERATORS[self.operator][1]} {text(self.operand)}"


Condition = tuple[Term, ...]


def parse_condition(raw: Any) -> Condition:
    """``when:`` as YAML gives it: a mapping of fields to ``{operator: operand}``, every term to hold, e.g.
    ``{numpy.simd_found: {has: X86_V4}}``. Operators: ``has`` / ``lacks`` (a list field holds / lacks the
    operand) and ``is`` / ``is_not`` (a single value equals / differs). Raises ConditionError."""
    if not isinstance(raw, dict) or not raw:
        raise ConditionError("when", "a non-empty mapping of numerics fields to {operator: value}, e.g. "
                             "{numpy.simd_found: {has: X86_V4}}")  # fmt: skip
    terms = []
    for field, test in raw.items():
        where = f"when.{field}"
        if field not in FIELDS:
            raise ConditionError(where, f"unknown numerics field {field!r} (known: {', '.join(FIELDS)})")
        if not isinstance(test, dict) or len(test) != 1:
            raise ConditionError(where, f"one {{operator: value}}, operator one of {', '.join(OPERATORS)}")
        ((operator, operand),) = test.items()
        if operator not in OPERATORS:
            raise ConditionError(where, f"unknown operator {operator!r} (one of: {', '.join(OPERATORS)})")
        if not isinstance(operand, (str, int, bool)) or isinstance(operand, float):
            raise ConditionError(f"{where}.{operator}", f"a string, a whole number or a boolean, not {operand!r}")
        terms.append(Term(field, operator, operand))
    return tuple(terms)


def holds(condition: Condition, record: dict[str, Value] | None) -> bool:
    """Whether every term holds on a numerics record (None, a run without one: no term holds)."""
    return record is not None and all(term.holds(record) for term in condition)


def describe_condition(condition: Condition) -> str:
    return " and ".join(map(str, condition))


def avx512_found(record: dict[str, Value]) -> list[str]:
    """The AVX-512 dispatch targets numpy found (X86_V4, AVX512_ICL, ...): what NPY_DISABLE_CPU_FEATURES must
    name to make numpy take its AVX2 / C-library kernels instead (.ci/run's second dispatch)."""
    found = record.get("numpy.simd_found", [])
    return [name for name in found if name.startswith(("X86_V4", "AVX512"))] if isinstance(found, list) else []


def main(argv: list[str] | None = None) -> int:
    """``python -m conformance.numerics``: this host's numpy dispatch in one line; ``--avx512``: the AVX-512
    targets numpy found, space-separated (empty where none)."""
    argv = sys.argv[1:] if argv is None else argv
    record = probe()
    if argv == ["--avx512"]:
        print(" ".join(avx512_found(record)))
    elif not argv:
        print(summary({k: v for k, v in record.items() if k.startswith(("numpy.", "env.NPY_"))}))
    else:
        print("usage: python -m conformance.numerics [--avx512]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
