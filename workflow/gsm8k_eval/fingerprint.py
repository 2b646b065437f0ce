"""What an evaluation shard's tokens depend on, as digests (docs/reproducibility.md).

A shard is reused only if its fingerprint equals the current one: the engine options, the
content of the model, checkpoint and dataset files, the rendered prompts, the package code that
can change rollouts, the device, the library versions, `XLA_FLAGS` and JAX's numerics settings.
Display-only values (output folder, config hash, model source label) are left out.

Importing this module does not import JAX (the Snakefile imports it to get `code_digest()`).
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

from gsm8k_eval.io import read_json, sha256_file, write_json

FINGERPRINT_FORMAT = 1
PACKAGE_DIR = Path(__file__).resolve().parent
# Modules that only render or compare finished rollouts: editing them never changes a shard.
RENDER_ONLY_MODULES = (
    "report*",
    "figures*",
    "stats",
    "invariance",
    "cli",
    "targets",
    "sweeps",
    "lm_eval_export",
    "provenance",
)
CODE_SUFFIXES = (".py", ".j2")
# The code each fetch stage runs: a change reruns that stage (and, through it, evaluate).
STAGE_MODULES = {
    "download_dataset": ("data", "io"),
    "fetch_model": ("models", "tokenizer", "io"),
    "fetch_checkpoint": ("checkpoints", "io"),
    # the PyTorch reference: its module and what it shares with evaluate (prompts, stops, grading)
    "reference": (
        "reference",
        "evaluate",
        "summary",
        "fingerprint",
        "sampler",  # the prompt-length check
        "prompts",
        "data",
        "tokenizer",
        "scoring",
        "stops",
        "io",
    ),
}
# Modules of optional stages that never run in an evaluation: left out of the default digest
# (editing them reruns only their stage, through `STAGE_MODULES`).
SEPARATE_STAGE_MODULES = ("reference",)
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
# Fields replaced by the digest of what they point to (or, for `device`, by the device found).
CONTENT_OPTIONS = ("dataset_path", "model_dir", "checkpoint_dir", "fewshot_path", "device")
MODEL_RECORD = "source.json"  # provenance written by fetch-model, never read by load_model
CHECKPOINT_MANIFEST = "manifest.json"
CHECKPOINT_MANIFEST_KEYS = ("lora", "checkpoint_dir")


def code_digest(package_dir: Path = PACKAGE_DIR, modules: Sequence[str] | None = None) -> str:
    """sha256 over the package's source files that can change rollouts (subpackages included).

    `modules` narrows it to some top-level modules or subpackages (e.g. a fetch stage's
    `STAGE_MODULES`), so that a code change reruns exactly the stages it can affect.
    """
    digest = hashlib.sha256()
    for path in _code_files(Path(package_dir)):
        top = _top_name(path.relative_to(package_dir))
        if top in SEPARATE_STAGE_MODULES if modules is None else top not in modules:
            continue
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _code_files(package_dir: Path) -> list[Path]:
    files = []
    for path in sorted(package_dir.rglob("*")):
        relative = path.relative_to(package_dir)
        if path.suffix not in CODE_SUFFIXES or "__pycache__" in relative.parts:
            continue
        if not _render_only(relative):
            files.append(path)
    return files


def _top_name(relative: Path) -> str:
    """The top-level module or subpackage a package file belongs to."""
    top = relative.parts[0]
    return top.removesuffix(".py") if len(relative.parts) == 1 else top


def _render_only(relative: Path) -> bool:
    """Whether a top-level module or subpackage is in `RENDER_ONLY_MODULES`."""
    name = _top_name(relative)
    return any(
        name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern
        for pattern in RENDER_ONLY_MODULES
    )


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
    """The options that shape the computation, as strings (paths and labels left out)."""
    skipped = set(DISPLAY_ONLY_OPTIONS) | set(CONTENT_OPTIONS)
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


def numerics_environment() -> dict[str, str | None]:
    """Environment variables that change XLA's numerics (`XLA_FLAGS`, `LIBTPU_INIT_ARGS`)."""
    return {name: os.environ.get(name) for name in NUMERICS_ENVIRONMENT}


def jax_numerics_config() -> dict[str, str]:
    """JAX configuration values that change numerics (imports JAX)."""
    import jax

    return {name: str(getattr(jax.config, name, None)) for name in NUMERICS_JAX_CONFIG}


def device_identity() -> dict[str, Any]:
    """Platform, device kind and device count of JAX's default backend (imports JAX)."""
    import jax

    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "kind": getattr(device, "device_kind", "unknown"),
        "count": jax.device_count(),
    }


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
