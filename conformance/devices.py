"""Where a framework computes: the ``--device`` of a run (the CLI's and pytest's option, ``CONFORMANCE_DEVICE``).

``cpu`` is the default, and a run on it is the run it always was: the same calls and the same bytes. Each
built-in adapter takes the names its framework gives its devices: torch ``cuda`` and ``cuda:N``
(``torch.device``), JAX ``gpu`` and ``gpu:N`` (``jax.devices("gpu")``), TensorFlow ``GPU:N`` (a logical
device of ``tf.config.list_logical_devices("GPU")``). A device that is absent is a ``DeviceUnavailable``
naming the devices that are there, never a silent run on the CPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from conformance.adapters import DeviceUnavailable

DEFAULT = "cpu"
ENV = "CONFORMANCE_DEVICE"
__all__ = ["DEFAULT", "ENV", "DeviceUnavailable", "absent", "cpu_only", "from_environment", "nvidia_driver", "parse"]
_SPEC = re.compile(r"^(?P<kind>[A-Za-z]+)(?::(?P<index>\d+))?$")


def from_environment() -> str:
    """The device a run asks for where no option is given: ``CONFORMANCE_DEVICE``, else ``cpu``."""
    return os.environ.get(ENV, "").strip() or DEFAULT


def parse(framework: str, device: str, kinds: tuple[str, ...], available: list[str]) -> tuple[str, int]:
    """(kind, index) of ``device`` as a framework names them (``cuda:1`` -> (``cuda``, 1); ``cuda`` -> index 0),
    for one of the ``kinds`` the framework computes on; ``available``: the devices there, for the message."""
    match = _SPEC.fullmatch(device.strip())
    if not match or match["kind"].lower() not in {kind.lower() for kind in kinds}:
        raise DeviceUnavailable(
            f"--device {device!r}: {framework} computes on {' or '.join(f'{kind}[:N]' for kind in kinds)}; "
            f"available here: {', '.join(available) or 'none'}"
        )
    return match["kind"].lower(), int(match["index"] or 0)


def absent(framework: str, device: str, available: list[str], why: str = "") -> DeviceUnavailable:
    """The error of a device that is not there."""
    because = f" ({why})" if why else ""
    return DeviceUnavailable(
        f"--device {device!r}: {framework} has no such device{because}; available here: "
        f"{', '.join(available) or 'none'}"
    )


def cpu_only(framework: str, device: str) -> None:
    """For an adapter that computes on the CPU alone (numpy, the test subjects): any other device is an error."""
    parse(framework, device, ("cpu",), ["cpu"])


def nvidia_driver(index: int) -> str | None:
    """The NVIDIA driver's version of GPU ``index``, as ``nvidia-smi`` reports it (no framework gives it); None where
    there is no ``nvidia-smi`` or it does not answer within seconds."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, "--query-gpu=driver_version", "--format=csv,noheader", "-i", str(index)],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = done.stdout.strip().splitlines()[0].strip() if done.returncode == 0 and done.stdout.strip() else ""
    return version or None
