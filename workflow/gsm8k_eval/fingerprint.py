"""What an evaluation shard's tokens depend on, as digests (docs/reproducibility.md).

A shard is reused only if its fingerprint equals the current one: the engine options, the
content of the model, checkpoint and dataset files, the rendered prompts, the package code the
evaluate stage imports (grading is not in it: it is the `score` stage's), the device, the
library versions, `XLA_FLAGS` and JAX's numerics settings. Display-only values (output folder,
config hash, model source label) are left out.

Importing this module does not import JAX.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from gsm8k_eval import codegraph
from gsm8k_eval.cpu_kind import cpu_kind
from gsm8k_eval.io import read_json, sha256_file, write_json

# 2: shards hold ungraded generations (issue 23 §2); format-1 shards are regenerated, with a
# log line naming `format` among what changed, never mixed with format-2 ones.
FINGERPRINT_FORMAT = 2
PACKAGE_DIR = Path(__file__).resolve().parent
# The stage whose code a shard's tokens depend on (its import graph; see codegraph.py).
GENERATING_COMMAND = "evaluate"
# Packages whose version can change generated tokens (GPU/TPU plugins are added when installed).
NUMERICS_PACKAGES = ("jax", "jaxlib", "flax", "google-tunix", "qwix", "numpy")
PLUGIN_PREFIXES = ("jax-cuda", "jax-rocm", "libtpu")
NUMERICS_ENVIRONMENT = ("XLA_FLAGS", "LIBTPU_INIT_ARGS")
NUMERICS_JAX_CONFIG = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_numpy_dtype_promotion",
    "jax_default_prng_impl",
    "jax_disable_jit",
)
# EvaluateOptions fields that never reach a shard's content (`part` picks which shards a job
# makes, not what is in them; the compilation cache returns the executable it stored).
DISPLAY_ONLY_OPTIONS = (
    "output_dir",
    "config_hash",
    "model_source",
    "dataset_manifest",
    "part",
    "compilation_cache",
)
# Sampled-evaluation options: they change no token at temperature 0, so a greedy run's
# fingerprint leaves them out (and stays what it was before they existed).
SAMPLING_OPTIONS = ("temperature", "top_k", "top_p", "num_samples", "sampling_seed")
# Fields replaced by the digest of what they point to (or, for `device`, by the device found).
CONTENT_OPTIONS = ("dataset_path", "model_dir", "checkpoint_dir", "fewshot_path", "device")
MODEL_RECORD = "source.json"  # provenance written by fetch-model, never read by load_model
CHECKPOINT_MANIFEST = "manifest.json"
CHECKPOINT_MANIFEST_KEYS = ("lora", "checkpoint_dir")


def code_digest(package_dir: Path = PACKAGE_DIR, command: str = GENERATING_COMMAND) -> str:
    """sha256 over the package code `gsm8k-eval <command>` imports (default: the generating
    stage's), derived from the import graph: grading, comparing and rendering code is not in
    it, so editing that never regenerates a shard."""
    return codegraph.stage_digest(command, Path(package_dir))


@dataclass
class DigestCache:
    """File sha256s keyed by path and stat signature (size, inode, mtime and ctime in ns).

    Replacing or rewriting a file changes its ctime (which no program can set back), so a
    cached digest is only reused for the very same bytes. `path=None`: no cache file.
    """

    path: Path | None = None
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> DigestCache:
        try:
            entries = read_json(path) if path is not None else {}
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {})

    def sha256(self, file: Path) -> str:
        key = str(Path(file).resolve())
        signature = _stat_signature(file)
        entry = self.entries.get(key)
        if entry and entry.get("stat") == signature:
            return entry["sha256"]
        digest = sha256_file(file)
        self.entries[key] = {"stat": signature, "sha256": digest}
        return digest

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, self.entries)


def _stat_signature(file: Path) -> list[int]:
    st = os.stat(file)
    return [st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns]


def tree_digest(root: Path, cache: DigestCache | None = None, exclude: Sequence[str] = ()) -> str:
    """sha256 over every file under `root`: relative paths and content digests, sorted."""
    cache = cache or DigestCache()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative not in exclude:
            lines.append(f"{relative}\t{cache.sha256(path)}")
    return _sha256_text("\n".join(lines))


def checkpoint_digest(checkpoint_dir: Path | None, cache: DigestCache | None = None) -> str | None:
    """The checkpoint files' digest plus the manifest fields that decide what is restored.

    The manifest's fetch time and statistics are left out: refetching the same step keeps it.
    """
    if checkpoint_dir is None:
        return None
    manifest_path = Path(checkpoint_dir) / CHECKPOINT_MANIFEST
    manifest = read_json(manifest_path) if manifest_path.exists() else {}
    files = tree_digest(Path(checkpoint_dir), cache, exclude=(CHECKPOINT_MANIFEST,))
    used = {key: manifest.get(key) for key in CHECKPOINT_MANIFEST_KEYS}
    return _sha256_text(json.dumps({"files": files, "manifest": used}, sort_keys=True))


def prompts_digest(prompts: Iterable[str]) -> str:
    """sha256 of the rendered prompt texts, in order."""
    return _sha256_text(json.dumps(list(prompts), ensure_ascii=False))


def engine_options(options: Mapping[str, Any]) -> dict[str, str]:
    """The options that shape the computation, as strings (paths and labels left out; the
    sampling options too at temperature 0)."""
    skipped = set(DISPLAY_ONLY_OPTIONS) | set(CONTENT_OPTIONS)
    if not float(options.get("temperature") or 0) > 0:
        skipped |= set(SAMPLING_OPTIONS)
    return {key: str(value) for key, value in sorted(options.items()) if key not in skipped}


def numerics_versions() -> dict[str, str]:
    """Versions of the libraries (and installed PJRT plugins) that compute the tokens."""
    versions = {name: _version(name) for name in NUMERICS_PACKAGES}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(PLUGIN_PREFIXES):
            versions[name] = dist.version
    return dict(sorted(versions.items()))


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Python's version and each named distribution's (`not installed` when absent)."""
    return {"python": platform.python_version(), **{name: _version(name) for name in names}}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


# Flags that say where shared autotune results are written or read (`evaluation.gpu_determinism`
# shared_autotune): the first job dumps, later ones load the same results, so both count as one.
SHARED_AUTOTUNE_FLAGS = (
    "--xla_gpu_dump_autotune_results_to",
    "--xla_gpu_load_autotune_results_from",
)


def numerics_environment() -> dict[str, str | None]:
    """Environment variables that change XLA's numerics (`XLA_FLAGS`, `LIBTPU_INIT_ARGS`); the
    shared-autotune dump/load flag becomes one marker, so a resumed job or a later part that
    loads what an earlier one dumped keeps the same fingerprint."""
    values = {name: os.environ.get(name) for name in NUMERICS_ENVIRONMENT}
    if values["XLA_FLAGS"]:
        values["XLA_FLAGS"] = " ".join(
            "shared_autotune_results" if flag.split("=", 1)[0] in SHARED_AUTOTUNE_FLAGS else flag
            for flag in values["XLA_FLAGS"].split()
        )
    return values


def jax_numerics_config() -> dict[str, str]:
    """JAX configuration values that change numerics (imports JAX)."""
    import jax

    return {name: str(getattr(jax.config, name, None)) for name in NUMERICS_JAX_CONFIG}


def device_identity() -> dict[str, Any]:
    """Platform, device kind and device count of JAX's default backend (imports JAX); on a CPU
    also its `cpu_kind` (vendor and vector extensions: XLA:CPU's float bits depend on them)."""
    import jax

    device = jax.devices()[0]
    identity = {
        "platform": device.platform,
        "kind": getattr(device, "device_kind", "unknown"),
        "count": jax.device_count(),
    }
    if device.platform == "cpu":
        identity["cpu"] = cpu_kind()
    return identity


def shard_fingerprint(
    options: Mapping[str, Any], prompts: Sequence[str], cache: DigestCache | None = None
) -> dict[str, Any]:
    """Everything a shard's content depends on (`options`: EvaluateOptions as a dict)."""
    cache = cache or DigestCache()
    return {
        "format": FINGERPRINT_FORMAT,
        "options": engine_options(options),
        "code_sha256": code_digest(),
        "model_sha256": tree_digest(Path(options["model_dir"]), cache, exclude=(MODEL_RECORD,)),
        "checkpoint_sha256": checkpoint_digest(options.get("checkpoint_dir"), cache),
        "dataset_sha256": cache.sha256(Path(options["dataset_path"])),
        "prompts_sha256": prompts_digest(prompts),
        "device": device_identity(),
        "versions": numerics_versions(),
        "environment": numerics_environment(),
        "jax_config": jax_numerics_config(),
    }


def fingerprint_digest(fingerprint: Mapping[str, Any]) -> str:
    """One sha256 for a whole fingerprint (canonical JSON)."""
    return _sha256_text(json.dumps(fingerprint, sort_keys=True))


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Top-level keys (and option names) whose values differ, for a log line."""
    keys = sorted(set(old) | set(new))
    changed = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{key}.{sub}" for sub in differences(a, b)]
        else:
            changed.append(key)
    return changed


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
