"""``--device`` (conformance.devices): the CPU by default, with the bytes of a run before there was a choice; a device
that is not there is an error naming those that are, from every entry (the CLI, pytest's option,
CONFORMANCE_DEVICE); a run off the CPU names its device in its header, every result record and the report's
label. The subjects: the `rounded` adapter, whose results are fixed by construction, and a third-party adapter
that takes ``device=``. ``test_torchs_*`` need a real torch (the torch env runs them; they skip elsewhere)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conformance import devices
from conformance.adapters import DeviceUnavailable, FrameworkUnavailable, load_adapter, load_framework
from conformance.cli import main
from conformance.environment import device_text
from conformance.results import read_run

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "cases" / "seed.yaml"


def run(tmp_path: Path, name: str, *options: str, adapter: str | None = None) -> tuple[int, Path]:
    out = tmp_path / name
    which = ["--adapter", adapter] if adapter else ["--framework", "rounded"]
    status = main(["run", *which, "--cases", str(SEED), "--out", str(out), "--progress", "none", *options])
    return status, out


def test_the_cpu_is_the_run_it_always_was(tmp_path, monkeypatch):
    """No option, ``--device cpu`` and ``CONFORMANCE_DEVICE=cpu`` give the same bytes, and no record names a device."""
    monkeypatch.delenv(devices.ENV, raising=False)
    _, plain = run(tmp_path, "plain")
    _, explicit = run(tmp_path, "explicit", "--device", "cpu")
    monkeypatch.setenv(devices.ENV, "cpu")
    _, environment = run(tmp_path, "environment")
    files = [folder / "rounded.jsonl" for folder in (plain, explicit, environment)]
    assert files[0].read_bytes() == files[1].read_bytes() == files[2].read_bytes()
    assert all("device" not in json.loads(line) for line in files[0].read_text().splitlines()[1:])


@pytest.mark.parametrize("framework", ["numpy", "rounded"])
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "gpu", "GPU:0", "tpu"])
def test_a_cpu_framework_refuses_another_device_by_name(framework, device):
    with pytest.raises(DeviceUnavailable, match=r"computes on cpu\[:N\]; available here: cpu$") as caught:
        load_framework(framework, device)
    assert repr(device) in str(caught.value) and isinstance(caught.value, FrameworkUnavailable)


def test_an_absent_device_is_a_clear_error_from_every_entry(tmp_path, monkeypatch, capsys, pytester):
    status, out = run(tmp_path, "cli", "--device", "cuda")
    err = capsys.readouterr().err
    assert status == 2 and "--device 'cuda'" in err and "available here: cpu" in err and "Traceback" not in err
    assert not (out / "rounded.jsonl").exists()  # never a silent run on the CPU
    monkeypatch.setenv(devices.ENV, "cuda:0")
    status, _ = run(tmp_path, "environment")
    assert status == 2 and "--device 'cuda:0'" in capsys.readouterr().err
    monkeypatch.delenv(devices.ENV)
    result = pytester.runpytest_subprocess(
        "--pyargs", "conformance.suite", "--framework", "rounded", "--conformance-cases", str(SEED), "--device", "cuda"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--device 'cuda'*available here: cpu*"])


def test_parse_names_the_device_and_its_index():
    assert devices.parse("torch", "cuda:1", ("cpu", "cuda"), []) == ("cuda", 1)
    assert devices.parse("torch", "CUDA", ("cpu", "cuda"), []) == ("cuda", 0)
    for bad in ("cuda:", "cuda:x", ":0", "", "cuda:0:1"):
        with pytest.raises(DeviceUnavailable, match="available here: cpu, cuda:0"):
            devices.parse("torch", bad, ("cpu", "cuda"), ["cpu", "cuda:0"])


ADAPTER = """
    import numpy as np
    from conformance.adapters import numpy as numpy_adapter
    from conformance.adapters import Framework, DeviceUnavailable

    def load(device="cpu"):
        if device not in ("cpu", "fake:0"):
            raise DeviceUnavailable(f"--device {device!r}: fake has cpu and fake:0")
        base = numpy_adapter.load()
        return Framework(name="fake", versions={"fake": "1.0"}, apis=numpy_adapter.apis("fake"),
                         settings={"device_name": "Fake Accelerator 9000"} if device != "cpu" else {},
                         device=device, multiply=base.multiply)

    def load_without_device():
        return load()
"""


def test_a_run_off_the_cpu_names_its_device_everywhere(tmp_path):
    """A third-party adapter that takes ``device=`` gets it; its run's header, every result record (schema-valid)
    and the report's label name the device; the CPU run of the same adapter names none."""
    path = tmp_path / "fake_adapter.py"
    path.write_text(textwrap.dedent(ADAPTER), encoding="utf-8")
    status, out = run(tmp_path, "fake", "--device", "fake:0", adapter=f"{path}:load")
    assert status in (0, 1)
    results = read_run(out / "fake.jsonl", strict=True)
    assert results.environment["device"] == "fake:0"
    assert list(results.environment["subnormals"]) == ["float16", "float32", "float64"]  # probed on the device
    assert {result.device for result in results.results} == {"fake:0"}
    assert results.label == "fake 1.0 · fake:0 (Fake Accelerator 9000)"
    assert device_text(results.environment) == "fake:0 (Fake Accelerator 9000)"
    _, cpu_out = run(tmp_path, "fake-cpu", adapter=f"{path}:load")
    cpu = read_run(cpu_out / "fake.jsonl", strict=True)
    assert {result.device for result in cpu.results} == {""} and cpu.label == "fake 1.0"
    assert list(cpu.environment["subnormals"]) == ["float32", "float64"]  # as before there was a choice


def test_an_adapter_without_device_is_refused_off_the_cpu(tmp_path):
    path = tmp_path / "fake_adapter.py"
    path.write_text(textwrap.dedent(ADAPTER), encoding="utf-8")
    with pytest.raises(DeviceUnavailable, match=r"takes no device= argument.*--device cpu"):
        load_adapter(f"{path}:load_without_device", "fake:0")
    with pytest.raises(DeviceUnavailable, match="fake has cpu and fake:0"):  # its own refusal, as it says it
        load_adapter(f"{path}:load", "cuda")
    assert load_adapter(f"{path}:load_without_device").device == "cpu"


def test_the_header_names_a_cuda_device_and_its_float_switches():
    environment = {"device": "cuda:0", "settings": {
        "device_name": "NVIDIA H200", "device_capability": "9.0", "cuda": "13.0", "driver": "580.65",
        "allow_tf32.matmul": "False", "allow_tf32.cudnn": "True", "float32_matmul_precision": "highest",
    }}  # fmt: skip
    assert device_text(environment) == (
        "cuda:0 (NVIDIA H200, compute 9.0, CUDA 13.0, driver 580.65; TF32 matmul False, cuDNN True; "
        "float32 matmul precision highest)"
    )
    assert device_text({"device": "cpu", "settings": {}}) == "cpu"


def test_torchs_absent_cuda_is_a_clear_error():
    """On a torch without a CUDA device (the CPU wheel, or no GPU), ``cuda`` names what there is; ``cpu`` is the
    device torch reports, as before."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this torch sees a CUDA device")
    with pytest.raises(DeviceUnavailable, match=r"--device 'cuda:0': torch has no such device \(torch .* sees 0 CUDA devices\); available here: cpu$"):
        load_framework("torch", "cuda:0")
    with pytest.raises(DeviceUnavailable, match=r"torch computes on cpu\[:N\] or cuda\[:N\]"):
        load_framework("torch", "GPU:0")
    assert load_framework("torch", "cpu").device == "cpu"


def test_the_report_and_diff_take_one_framework_on_two_devices(tmp_path, capsys):
    """The same adapter's runs on the CPU and off it, in one folder: the report shows both, each under its own
    label; ``diff`` compares the two files as it compares two versions (here the same results: no change)."""
    path = tmp_path / "fake_adapter.py"
    path.write_text(textwrap.dedent(ADAPTER), encoding="utf-8")
    spec = f"{path}:load"
    for name, options in (("fake-cpu", ()), ("fake-device", ("--device", "fake:0"))):
        status = main(["run", "--adapter", spec, "--cases", str(SEED), "--out", str(tmp_path / "results"),
                       "--name", name, "--progress", "none", *options])  # fmt: skip
        assert status in (0, 1)
    assert main(["report", str(tmp_path / "results"), "--out", str(tmp_path / "report")]) in (0, 1)
    summary = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    assert "fake 1.0 · fake:0 (Fake Accelerator 9000)" in summary and "| fake 1.0 |" in summary
    capsys.readouterr()
    results = tmp_path / "results"
    assert main(["diff", str(results / "fake-cpu.jsonl"), str(results / "fake-device.jsonl")]) == 0
    assert "0 regressions" in capsys.readouterr().out


def test_jaxs_absent_gpu_is_a_clear_error():
    """On a jaxlib without a GPU backend, ``gpu`` names what there is; the CPU is JAX's first device, as before."""
    jax = pytest.importorskip("jax")
    try:
        jax.devices("gpu")
        pytest.skip("this JAX has a GPU")
    except RuntimeError:
        pass
    with pytest.raises(DeviceUnavailable, match=r"--device 'gpu': jax has no such device \(jax .* has 0 gpu devices\); available here: cpu:0"):
        load_framework("jax", "gpu")
    with pytest.raises(DeviceUnavailable, match=r"jax computes on cpu\[:N\] or gpu\[:N\]"):
        load_framework("jax", "cuda")
    assert load_framework("jax", "cpu").device == str(jax.devices("cpu")[0])


def test_tensorflows_absent_gpu_is_a_clear_error():
    """On tensorflow-cpu, ``GPU:0`` names what there is; the CPU run's device is TensorFlow's name for it, as before."""
    tf = pytest.importorskip("tensorflow")
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("this TensorFlow sees a GPU")
    with pytest.raises(DeviceUnavailable, match=r"--device 'GPU:0': tensorflow has no such device \(tensorflow .* sees 0 GPUs\); available here: CPU:0$"):
        load_framework("tensorflow", "GPU:0")
    with pytest.raises(DeviceUnavailable, match=r"its CPU is one device, CPU:0"):
        load_framework("tensorflow", "cpu:1")
    assert load_framework("tensorflow", "cpu").device == tf.constant(0.0).device


def test_the_driver_is_nvidia_smis(tmp_path, monkeypatch):
    """The NVIDIA driver's version comes from nvidia-smi (no framework reports it); none without nvidia-smi."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert devices.nvidia_driver(0) is None
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\n[ "$4" = "1" ] && echo "580.65.06" || exit 6\n', encoding="utf-8")
    fake.chmod(0o755)
    assert devices.nvidia_driver(1) == "580.65.06"
    assert devices.nvidia_driver(0) is None  # it refused: no such GPU
