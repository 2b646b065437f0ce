"""Which JAX backend an evaluation runs on, and the XLA settings that make GPU runs deterministic.

`evaluation.device` / `--device`: `auto` (JAX's choice), `cpu`, `gpu` (whichever GPU backend is
installed: CUDA first, then ROCm), `cuda`, `rocm` or `tpu`. `select_device` runs before JAX is
imported; it checks that the requested backend's PJRT plugin is installed, sets `JAX_PLATFORMS`
to exactly that backend, and on GPUs adds `GPU_DETERMINISM_FLAGS` to `XLA_FLAGS` (a flag the user
already set wins). `check_backend` runs after JAX starts and fails if the backend is another.

Determinism across jobs: every (checkpoint, batch size) is its own process, so XLA compiles
each separately. `--xla_gpu_deterministic_ops=true` removes atomics-based (run-to-run varying)
reductions and scatters; `--xla_gpu_autotune_level=0` turns autotuning off, so the kernel for a
given HLO does not depend on timing measurements taken in each process. `evaluation.gpu_determinism`
chooses among these and alternatives measured by `benchmarks/gpu_bench.py` (`GPU_DETERMINISM`):
the default `flags` is the pair above; `*shared_autotune` keeps autotuning on and shares its
results through a file in the run's compilation-cache folder (loaded when it exists, written by
the job that finds none). See docs/gpu.md.

This module does not import JAX at import time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

DEVICES = ("auto", "cpu", "gpu", "cuda", "rocm", "tpu")
GPU_BACKENDS = ("cuda", "rocm")
# What jax.devices()[0].platform says on a GPU (older JAX: "gpu", newer: the backend's name).
GPU_PLATFORMS = frozenset({"gpu", *GPU_BACKENDS})
GPU_DETERMINISM_FLAGS = ("--xla_gpu_deterministic_ops=true", "--xla_gpu_autotune_level=0")
_DETERMINISTIC_OPS, _AUTOTUNE_OFF = GPU_DETERMINISM_FLAGS
GPU_DETERMINISM: dict[str, tuple[str, ...]] = {
    "flags": GPU_DETERMINISM_FLAGS,
    "deterministic_ops": (_DETERMINISTIC_OPS,),
    "autotune_off": (_AUTOTUNE_OFF,),
    "none": (),
    "shared_autotune": (),
    "deterministic_ops+shared_autotune": (_DETERMINISTIC_OPS,),
}
AUTOTUNE_RESULTS_FILE = "xla-autotune-results.textproto"
_DUMP_AUTOTUNE = "--xla_gpu_dump_autotune_results_to"
_LOAD_AUTOTUNE = "--xla_gpu_load_autotune_results_from"
_PLUGIN_PATTERNS = {
    "cuda": re.compile(r"^jax[-_]cuda\d+[-_](plugin|pjrt)$"),
    "rocm": re.compile(r"^jax[-_]rocm\d+[-_](plugin|pjrt)$"),
    "tpu": re.compile(r"^libtpu([-_]nightly)?$"),
}


@dataclass(frozen=True)
class DeviceChoice:
    """What `--device` resolved to: the JAX platform to pin and the XLA flags to add."""

    requested: str
    platform: str | None  # value for JAX_PLATFORMS; None: leave JAX's choice alone
    xla_flags: tuple[str, ...]  # determinism flags to add to XLA_FLAGS
    gpu: bool = False  # a GPU backend: the only kind the GPU determinism flags apply to

    @property
    def deterministic(self) -> bool:
        return bool(self.xla_flags)


def installed_backends() -> frozenset[str]:
    """Accelerator backends whose PJRT plugin (or a CUDA/ROCm jaxlib build) is installed."""
    found = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        found.update(kind for kind, pattern in _PLUGIN_PATTERNS.items() if pattern.match(name))
    try:
        local = metadata.version("jaxlib").partition("+")[2]
    except metadata.PackageNotFoundError:
        local = ""
    found.update(kind for kind in GPU_BACKENDS if kind in local)
    return frozenset(found)


def gpu_determinism_flags(mode: str = "flags", shared_dir: Path | None = None) -> tuple[str, ...]:
    """The XLA flags of an `evaluation.gpu_determinism` mode; the shared-autotune modes load
    `shared_dir`/AUTOTUNE_RESULTS_FILE when it exists and write it otherwise."""
    if mode not in GPU_DETERMINISM:
        raise ValueError(
            f"evaluation.gpu_determinism must be one of {', '.join(GPU_DETERMINISM)}, got {mode!r}"
        )
    flags = GPU_DETERMINISM[mode]
    if not mode.endswith("shared_autotune"):
        return flags
    if shared_dir is None:
        raise ValueError(
            f"evaluation.gpu_determinism {mode!r} needs evaluation.compilation_cache (the folder "
            f"its autotune results are shared in)"
        )
    file = Path(shared_dir) / AUTOTUNE_RESULTS_FILE
    return (*flags, f"{_LOAD_AUTOTUNE if file.exists() else _DUMP_AUTOTUNE}={file}")


def resolve_device(
    device: str,
    installed: frozenset[str] | None = None,
    gpu_flags: tuple[str, ...] = GPU_DETERMINISM_FLAGS,
) -> DeviceChoice:
    """Map an `evaluation.device` value to a JAX platform (adding `gpu_flags` on GPUs); a
    ValueError if it is not installed."""
    if device not in DEVICES:
        raise ValueError(
            f"evaluation.device / --device must be one of {', '.join(DEVICES)}, got {device!r}"
        )
    if device == "cpu":
        return DeviceChoice(device, "cpu", ())
    installed = installed_backends() if installed is None else installed
    if device == "auto":
        gpu = any(kind in installed for kind in GPU_BACKENDS)
        return DeviceChoice(device, None, gpu_flags if gpu else (), gpu)
    wanted = [kind for kind in GPU_BACKENDS if kind in installed] if device == "gpu" else [device]
    if not wanted or wanted[0] not in installed:
        raise ValueError(_absent_message(device, installed))
    platform = wanted[0]
    gpu = platform in GPU_BACKENDS
    return DeviceChoice(device, platform, gpu_flags if gpu else (), gpu)


def _absent_message(device: str, installed: frozenset[str]) -> str:
    hint = {
        "gpu": "jax[cuda12] (NVIDIA) or jax[rocm] (AMD)",
        "cuda": "jax[cuda12]",
        "rocm": "jax[rocm]",
        "tpu": "jax[tpu]",
    }[device]
    have = ", ".join(sorted(installed)) or "none"
    return (
        f"evaluation.device / --device {device!r}: no {device} backend installed "
        f"(accelerator plugins found: {have}); install {hint} or use --device cpu"
    )


def merge_xla_flags(existing: str, added: tuple[str, ...]) -> str:
    """`existing` XLA_FLAGS plus each added flag the user did not set (the user's value wins)."""
    names = set(xla_flag_values(existing))
    extra = [flag for flag in added if _split_flag(flag)[0] not in names]
    return " ".join([*existing.split(), *extra])


def select_device(
    device: str, gpu_determinism: str = "flags", shared_dir: Path | None = None
) -> DeviceChoice:
    """Resolve `device` and set JAX_PLATFORMS and XLA_FLAGS (call before JAX is imported);
    `gpu_determinism`: the `evaluation.gpu_determinism` mode (`shared_dir`: where its shared
    autotune results live, the compilation-cache folder): applied, and checked, on a GPU
    backend only (`auto` counts as one when a GPU plugin is installed)."""
    choice = resolve_device(device)
    if choice.gpu:
        choice = replace(choice, xla_flags=gpu_determinism_flags(gpu_determinism, shared_dir))
    if choice.platform is not None:
        os.environ["JAX_PLATFORMS"] = choice.platform
    if choice.xla_flags:
        os.environ["XLA_FLAGS"] = merge_xla_flags(os.environ.get("XLA_FLAGS", ""), choice.xla_flags)
    return choice


def check_backend(device: str | None) -> str:
    """After JAX starts: the platform in use, or a ValueError if it is not the requested one."""
    import jax

    try:
        platform = jax.devices()[0].platform
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"evaluation.device / --device {device!r}: JAX could not start the backend ({first})"
        ) from error
    expected = {
        "gpu": set(GPU_BACKENDS) | {"gpu"},
        "cuda": {"cuda", "gpu"},
        "rocm": {"rocm", "gpu"},
    }.get(device or "auto", {device})
    if device not in (None, "auto") and platform not in expected:
        raise ValueError(
            f"evaluation.device / --device {device!r}: JAX runs on {platform!r} "
            f"instead (check JAX_PLATFORMS and the installed plugins)"
        )
    return platform


def determinism_settings(device: str | None, platform: str) -> dict[str, object]:
    """What summary.json records: the device asked for and found, and the XLA determinism flags
    in effect (None: not set, XLA's default applies); `gpu_determinism`, the mode those flags
    amount to, only on a GPU (None on a CPU or TPU, where no GPU determinism applies)."""
    flags = xla_flag_values(os.environ.get("XLA_FLAGS", ""))
    return {
        "requested_device": device,
        "platform": platform,
        "xla_gpu_deterministic_ops": flags.get("--xla_gpu_deterministic_ops"),
        "xla_gpu_autotune_level": flags.get("--xla_gpu_autotune_level"),
        "gpu_determinism_flags_set": all(
            flags.get(name) == value for name, value in map(_split_flag, GPU_DETERMINISM_FLAGS)
        ),
        "gpu_determinism": gpu_determinism_mode(flags) if platform in GPU_PLATFORMS else None,
        "xla_gpu_load_autotune_results_from": flags.get(_LOAD_AUTOTUNE),
        "xla_gpu_dump_autotune_results_to": flags.get(_DUMP_AUTOTUNE),
    }


def gpu_determinism_mode(flags: dict[str, str]) -> str:
    """The `evaluation.gpu_determinism` mode that XLA flags amount to ("custom": none of them)."""
    shared = _LOAD_AUTOTUNE in flags or _DUMP_AUTOTUNE in flags
    wanted = {
        name: value
        for name, value in flags.items()
        if name in (_split_flag(_DETERMINISTIC_OPS)[0], _split_flag(_AUTOTUNE_OFF)[0])
    }
    for mode, mode_flags in GPU_DETERMINISM.items():
        if shared == mode.endswith("shared_autotune") and wanted == dict(
            map(_split_flag, mode_flags)
        ):
            return mode
    return "custom"


def xla_flag_values(xla_flags: str) -> dict[str, str]:
    """`--name=value` flags as {name: value} (a bare `--name` as "true"); the last one wins."""
    return dict(_split_flag(flag) for flag in xla_flags.split())


def _split_flag(flag: str) -> tuple[str, str]:
    name, sep, value = flag.partition("=")
    return name, value if sep else "true"
