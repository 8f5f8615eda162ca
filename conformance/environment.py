"""What a run ran on: the framework and its versions, Python, platform, CPU, device, whether the
framework flushes subnormals, the numerics environment (SIMD dispatch, CPU capability, oneDNN, threads:
``conformance.numerics``), mpmath, and this suite's version. The results file's first record.

Nothing here depends on the time: the same run on the same machine and versions describes itself
with the same bytes.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import mpmath
import numpy as np

from conformance import __version__, numerics
from conformance.adapters import Framework

PROBED_DTYPES = ("float32", "float64")
# off the CPU, float16 too: a GPU's half-precision units may flush where its float32 ones do not
DEVICE_PROBED_DTYPES = ("float16", *PROBED_DTYPES)


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def subnormal_probe(framework: Framework, dtypes: tuple[str, ...] = PROBED_DTYPES) -> dict[str, Any]:
    """Per dtype, whether the framework's own multiply (on its device) flushes a subnormal result to
    zero (FTZ: smallest normal · 0.5) and reads a subnormal input as zero (DAZ: smallest subnormal ·
    2**(mantissa bits + 1), a normal result). A probe that raises says so instead."""
    if framework.multiply is None:
        return {"probe": "none: the adapter gives no multiply"}
    out: dict[str, Any] = {}
    for name in dtypes:
        info = np.finfo(name)
        try:
            half_normal = np.asarray(framework.multiply(np.array([info.smallest_normal], dtype=name), 0.5))
            tiny_scaled = np.asarray(
                framework.multiply(np.array([info.smallest_subnormal], dtype=name), float(2.0 ** (info.nmant + 1)))
            )
        except Exception as exc:  # the framework's own refusal is the probe's answer
            out[name] = {"probe": f"raised {type(exc).__name__}: {exc}".splitlines()[0]}
            continue
        out[name] = {
            "flushed_to_zero": bool(half_normal.ravel()[0] == 0),
            "inputs_as_zero": bool(tiny_scaled.ravel()[0] == 0),
        }
    return out


def describe(
    framework: Framework, numerics_record: dict[str, Any] | None = None, off_cpu: bool = False
) -> dict[str, Any]:
    """The environment record of a results file; ``numerics_record``: the numerics the run's plan probed (the
    one its `when:` conditions were decided on), probed here where not given. ``off_cpu``: the run's --device
    is not the CPU (``conformance.devices``): float16 is probed there too."""
    return {
        "framework": framework.name,
        "framework_versions": dict(sorted(framework.versions.items())),
        "settings": dict(sorted(framework.settings.items())),
        "device": framework.device,
        "subnormals": subnormal_probe(framework, DEVICE_PROBED_DTYPES if off_cpu else PROBED_DTYPES),
        "numerics": numerics.probe() if numerics_record is None else numerics_record,
        "suite": __version__,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "numpy": np.__version__,
        "mpmath": mpmath.__version__,
        "mpmath_backend": mpmath.libmp.BACKEND,
    }


def subnormal_text(subnormals: dict[str, Any]) -> str:
    """``float32 kept, float64 kept`` / ``float32 flushed to zero, subnormal inputs read as zero``."""
    if "probe" in subnormals:
        return subnormals["probe"]
    parts = []
    for dtype, probe in subnormals.items():
        if "probe" in probe:
            parts.append(f"{dtype} {probe['probe']}")
            continue
        what = [w for w, on in (("results flushed to zero", probe.get("flushed_to_zero")), ("inputs read as zero", probe.get("inputs_as_zero"))) if on]
        parts.append(f"{dtype} {' and '.join(what) if what else 'subnormals kept'}")
    return "; ".join(parts)


def device_text(environment: dict[str, Any]) -> str:
    """``cpu``; off the CPU, with what the adapter recorded of the device's float behaviour (its settings):
    ``cuda:0 (NVIDIA H200, compute 9.0, CUDA 13.0, driver 580.65; TF32 matmul False, cuDNN True; float32 matmul
    precision highest)``."""
    device, settings = environment.get("device"), environment.get("settings") or {}
    if "device_name" not in settings:
        return str(device)
    facts = [settings["device_name"]]
    facts += [
        f"{label} {settings[key]}"
        for key, label in (("device_capability", "compute"), ("cuda", "CUDA"), ("driver", "driver"))
        if key in settings
    ]
    tf32 = [
        f"{label} {settings[key]}"
        for key, label in (("allow_tf32.matmul", "TF32 matmul"), ("allow_tf32.cudnn", "cuDNN"), ("tensor_float_32_execution", "TF32"))
        if key in settings
    ]
    groups = [", ".join(facts), ", ".join(tf32)]
    if "float32_matmul_precision" in settings:
        groups.append(f"float32 matmul precision {settings['float32_matmul_precision']}")
    return f"{device} ({'; '.join(group for group in groups if group)})"


def header(environment: dict[str, Any]) -> str:
    """One line for a run's header: device, subnormal probe, numerics, Python and platform."""
    recorded = environment.get("numerics")
    return (
        f"device {device_text(environment)}; subnormals: {subnormal_text(environment.get('subnormals', {}))}; "
        f"numerics: {numerics.summary(recorded) if recorded is not None else '(not recorded)'}; "
        f"python {environment.get('python')} on {environment.get('platform')} ({environment.get('cpu')}); "
        f"mpmath {environment.get('mpmath')} ({environment.get('mpmath_backend')}); bce-conformance {environment.get('suite')}"
    )
