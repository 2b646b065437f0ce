"""evaluation.device / --device: the mapping to JAX platforms on CUDA-only, ROCm-only and TPU
machines, clear errors when the device is absent, and GPU determinism flags (issue 16 §6)."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from gsm8k_eval import device
from gsm8k_eval.device import GPU_DETERMINISM_FLAGS, resolve_device

CUDA_ONLY = frozenset({"cuda"})
ROCM_ONLY = frozenset({"rocm"})
TPU_ONLY = frozenset({"tpu"})
NONE = frozenset()


@pytest.mark.parametrize(
    ("requested", "installed", "platform", "flags"),
    [
        ("gpu", CUDA_ONLY, "cuda", GPU_DETERMINISM_FLAGS),
        ("gpu", ROCM_ONLY, "rocm", GPU_DETERMINISM_FLAGS),
        ("gpu", frozenset({"cuda", "rocm"}), "cuda", GPU_DETERMINISM_FLAGS),
        ("cuda", CUDA_ONLY, "cuda", GPU_DETERMINISM_FLAGS),
        ("rocm", ROCM_ONLY, "rocm", GPU_DETERMINISM_FLAGS),
        ("tpu", TPU_ONLY, "tpu", ()),
        ("cpu", CUDA_ONLY, "cpu", ()),
        ("cpu", NONE, "cpu", ()),
        ("auto", CUDA_ONLY, None, GPU_DETERMINISM_FLAGS),
        ("auto", TPU_ONLY, None, ()),
        ("auto", NONE, None, ()),
    ],
)
def test_device_mapping(requested, installed, platform, flags):
    choice = resolve_device(requested, installed)
    assert (choice.platform, choice.xla_flags) == (platform, flags)
    assert choice.platform is None or "," not in choice.platform  # never "cuda,rocm"


@pytest.mark.parametrize(
    ("requested", "installed"),
    [
        ("gpu", NONE),
        ("gpu", TPU_ONLY),
        ("cuda", ROCM_ONLY),
        ("rocm", CUDA_ONLY),
        ("tpu", CUDA_ONLY),
        ("cuda", NONE),
    ],
)
def test_absent_device_is_a_one_line_error(requested, installed):
    with pytest.raises(ValueError) as error:
        resolve_device(requested, installed)
    message = str(error.value)
    assert "\n" not in message
    assert "evaluation.device / --device" in message and repr(requested) in message
    assert "--device cpu" in message


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="must be one of auto, cpu, gpu, cuda, rocm, tpu"):
        resolve_device("metal", CUDA_ONLY)


def _fake_distributions(monkeypatch, names, jaxlib="0.10.2"):
    dists = [SimpleNamespace(metadata={"Name": name}, version="1.0") for name in names]
    monkeypatch.setattr(device.metadata, "distributions", lambda: dists)
    monkeypatch.setattr(device.metadata, "version", lambda name: jaxlib)


@pytest.mark.parametrize(
    ("names", "jaxlib", "found"),
    [
        (["jax-cuda12-plugin", "jax-cuda12-pjrt", "numpy"], "0.10.2", {"cuda"}),
        (["jax_cuda13_plugin"], "0.10.2", {"cuda"}),
        (["jax-rocm7-plugin", "jax-rocm7-pjrt"], "0.10.2", {"rocm"}),
        (["libtpu"], "0.10.2", {"tpu"}),
        (["jax", "jaxlib", "flax"], "0.10.2", set()),
        ([], "0.4.20+cuda12.cudnn89", {"cuda"}),
    ],
)
def test_installed_backends_from_package_metadata(monkeypatch, names, jaxlib, found):
    _fake_distributions(monkeypatch, names, jaxlib)
    assert device.installed_backends() == found


def test_select_device_on_a_cuda_only_machine(monkeypatch):
    _fake_distributions(monkeypatch, ["jax-cuda12-plugin"])
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_autotune_level=4 --xla_dump_to=/tmp/x")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    choice = device.select_device("gpu")
    assert choice.platform == "cuda"
    assert os.environ["JAX_PLATFORMS"] == "cuda"
    # the user's autotune level wins; the missing determinism flag is added
    assert os.environ["XLA_FLAGS"] == (
        "--xla_gpu_autotune_level=4 --xla_dump_to=/tmp/x --xla_gpu_deterministic_ops=true"
    )


def test_select_device_refuses_rocm_on_a_cuda_machine_before_jax(monkeypatch):
    _fake_distributions(monkeypatch, ["jax-cuda12-plugin"])
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    with pytest.raises(ValueError, match="no rocm backend installed"):
        device.select_device("rocm")
    assert os.environ["JAX_PLATFORMS"] == "cpu"


def test_merge_xla_flags_keeps_user_flags():
    merged = device.merge_xla_flags("--xla_gpu_deterministic_ops=false", GPU_DETERMINISM_FLAGS)
    assert merged == "--xla_gpu_deterministic_ops=false --xla_gpu_autotune_level=0"
    assert device.merge_xla_flags("", GPU_DETERMINISM_FLAGS) == " ".join(GPU_DETERMINISM_FLAGS)


def test_determinism_settings_read_the_effective_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", " ".join(GPU_DETERMINISM_FLAGS))
    settings = device.determinism_settings("gpu", "gpu")
    assert settings == {
        "requested_device": "gpu",
        "platform": "gpu",
        "xla_gpu_deterministic_ops": "true",
        "xla_gpu_autotune_level": "0",
        "gpu_determinism_flags_set": True,
        "gpu_determinism": "flags",
        "xla_gpu_load_autotune_results_from": None,
        "xla_gpu_dump_autotune_results_to": None,
    }
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_autotune_level=4")
    settings = device.determinism_settings("auto", "cpu")
    assert settings["gpu_determinism_flags_set"] is False
    assert settings["xla_gpu_deterministic_ops"] is None


def test_gpu_determinism_modes_and_their_record(monkeypatch, tmp_path):
    """Each `evaluation.gpu_determinism` mode's flags; summary.json's mode read back from them;
    the shared-autotune modes write the results file when absent and load it once present."""
    for mode in device.GPU_DETERMINISM:
        flags = device.gpu_determinism_flags(mode, tmp_path)
        assert device.gpu_determinism_mode(device.xla_flag_values(" ".join(flags))) == mode
    assert device.gpu_determinism_flags("flags") == GPU_DETERMINISM_FLAGS
    file = tmp_path / device.AUTOTUNE_RESULTS_FILE
    assert device.gpu_determinism_flags("shared_autotune", tmp_path) == (
        f"--xla_gpu_dump_autotune_results_to={file}",
    )
    file.write_text("")
    assert device.gpu_determinism_flags("deterministic_ops+shared_autotune", tmp_path) == (
        "--xla_gpu_deterministic_ops=true",
        f"--xla_gpu_load_autotune_results_from={file}",
    )
    with pytest.raises(ValueError, match="compilation_cache"):
        device.gpu_determinism_flags("shared_autotune", None)
    with pytest.raises(ValueError, match="gpu_determinism must be one of"):
        device.gpu_determinism_flags("fast")
    assert device.gpu_determinism_mode({"--xla_gpu_autotune_level": "4"}) == "custom"


def test_select_device_adds_the_chosen_mode(monkeypatch, tmp_path):
    _fake_distributions(monkeypatch, ["jax-cuda12-plugin"])
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    device.select_device("gpu", "autotune_off", tmp_path)
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_autotune_level=0"
    assert device.determinism_settings("gpu", "gpu")["gpu_determinism"] == "autotune_off"


@pytest.mark.parametrize(
    ("requested", "installed", "platform"),
    [
        ("tpu", ["libtpu"], "tpu"),
        ("auto", ["libtpu"], "tpu"),
        ("auto", [], "cpu"),
        ("cpu", ["jax-cuda12-plugin"], "cpu"),
    ],
)
def test_gpu_determinism_is_neither_applied_nor_recorded_off_a_gpu(
    monkeypatch, requested, installed, platform
):
    """A mode that would fail on a GPU (shared autotune without a cache folder) is not even
    looked at elsewhere: no flags, no error, and summary.json records no GPU mode."""
    _fake_distributions(monkeypatch, installed)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    choice = device.select_device(requested, "shared_autotune", None)
    assert (choice.gpu, choice.xla_flags) == (False, ())
    assert "XLA_FLAGS" not in os.environ
    assert device.determinism_settings(requested, platform)["gpu_determinism"] is None


def test_gpu_determinism_on_a_gpu_is_applied_checked_and_recorded(monkeypatch, tmp_path):
    _fake_distributions(monkeypatch, ["jax-cuda12-plugin"])
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    with pytest.raises(ValueError, match=r"needs evaluation\.compilation_cache"):
        device.select_device("auto", "shared_autotune", None)  # auto with a GPU plugin: a GPU
    choice = device.select_device("auto", "deterministic_ops", tmp_path)
    assert choice.gpu and choice.xla_flags == ("--xla_gpu_deterministic_ops=true",)
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=true"
    for platform in ("gpu", "cuda"):
        record = device.determinism_settings("auto", platform)
        assert record["gpu_determinism"] == "deterministic_ops"
    # the same flags on a TPU (a user's XLA_FLAGS) are no GPU determinism mode
    assert device.determinism_settings("tpu", "tpu")["gpu_determinism"] is None


def test_check_backend_names_the_device_when_jax_runs_elsewhere():
    assert device.check_backend("cpu") == "cpu"
    assert device.check_backend("auto") == "cpu"
    with pytest.raises(ValueError, match="--device 'cuda': JAX runs on 'cpu' instead"):
        device.check_backend("cuda")


def test_check_backend_turns_a_failed_backend_into_a_one_line_error(monkeypatch):
    import jax

    def fail():
        raise RuntimeError("Unable to initialize backend 'cuda': no GPU\nmore detail")

    monkeypatch.setattr(jax, "devices", fail)
    with pytest.raises(ValueError) as error:
        device.check_backend("cuda")
    assert str(error.value) == (
        "evaluation.device / --device 'cuda': JAX could not start the backend "
        "(Unable to initialize backend 'cuda': no GPU)"
    )


def test_cli_reports_a_missing_gpu_backend_in_one_line(tmp_path):
    """A backend whose plugin is not installed fails before anything is loaded."""
    absent = next(k for k in ("rocm", "tpu", "cuda") if k not in device.installed_backends())
    (tmp_path / "d.jsonl").write_text("")  # inputs exist: the device is what is wrong
    command = [
        sys.executable,
        "-m",
        "gsm8k_eval",
        "evaluate",
        "--dataset",
        str(tmp_path / "d.jsonl"),
        "--model-dir",
        str(tmp_path),
        "--batch-size",
        "1",
        "--device",
        absent,
        "--output-dir",
        str(tmp_path / "out"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"gsm8k-eval evaluate: error: evaluation.device / --device '{absent}': no {absent} backend"
    )
    assert not (tmp_path / "out").exists()
