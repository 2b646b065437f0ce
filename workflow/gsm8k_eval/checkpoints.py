"""Fetch tunix LoRA actor checkpoints (GCS or local) and restore them onto a base model.

tunix's ``PeftTrainer`` (used by the RL trainer for the actor) saves with orbax under
``<run>/actor/<step>/``: ``_CHECKPOINT_METADATA``, ``model_params/`` and ``optimizer_state/``.
With LoRA, ``model_params`` holds only the qwix ``*_lora_a``/``*_lora_b`` arrays. Evaluation
needs ``model_params`` and the step metadata, never ``optimizer_state``.

Local layout written by :func:`fetch_checkpoint` (``out_dir``)::

    manifest.json        provenance: source, step, every object's size/generation/md5/crc32c
    <step>/_CHECKPOINT_METADATA, <step>/model_params/...   (same layout as the trainer's)

LoRA rank, alpha and module_path are NOT stored in the checkpoint: they come from
:class:`LoraConfig`. A wrong rank or module_path is detected (tree/shape mismatch); a wrong alpha
cannot be: it restores silently and scales every LoRA delta by ``alpha / rank``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import google_crc32c
from fsspec.callbacks import Callback
from tqdm import tqdm

log = logging.getLogger(__name__)

BASE_SOURCE = "base"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "gsm8k-eval/checkpoint/v1"
PARAMS_DIR = "model_params"
STEP_METADATA = "_CHECKPOINT_METADATA"
SKIPPED_ITEMS = ("optimizer_state",)  # orbax items evaluation never needs
# tunix examples/rl/grpo/gsm8k/configs/gemma3_1b.yaml (and every tunix GRPO config).
DEFAULT_MODULE_PATH = (
    ".*q_einsum|.*kv_einsum|.*gate_proj|.*down_proj|.*up_proj|.*attn_vec_einsum"
)
MAX_ATTEMPTS = 3  # downloads per object before a checksum mismatch is reported
_CHUNK = 1 << 20


# --- errors ------------------------------------------------------------------------------------


class CheckpointError(RuntimeError):
    """Base class; the message is one line naming the path and what to do."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


class CheckpointNotFoundError(CheckpointError):
    """Missing bucket, path, step folder or ``model_params``."""


class CheckpointAccessError(CheckpointError):
    """401/403 or no credentials."""


class CheckpointIntegrityError(CheckpointError):
    """An object failed md5/crc32c/size verification or changed on the server mid-fetch."""


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's LoRA tree does not match the model + :class:`LoraConfig` (multi-line)."""


# --- config and records ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraConfig:
    """qwix LoRA hyper-parameters; must equal what the trainer used (not stored in checkpoints).

    Defaults: rank 16 (the seed's runs); alpha 16.0 = rank, i.e. scale ``alpha / rank = 1`` as in
    every tunix GRPO/PPO example config (``rank: 64, alpha: 64.0``); module_path as in tunix's
    Gemma3-1B GRPO config.
    """

    rank: int = 16
    alpha: float = 16.0
    module_path: str = DEFAULT_MODULE_PATH

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"lora.rank must be a positive int, got {self.rank!r}")
        if not self.alpha > 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha!r}")
        if not self.module_path:
            raise ValueError("lora.module_path must be a non-empty regex")
        re.compile(self.module_path)


@dataclass(frozen=True)
class RemoteObject:
    """One file of a checkpoint as listed at the source."""

    name: str  # relative to the checkpoint root, e.g. "5/model_params/_METADATA"
    path: str  # full path for the filesystem ("bucket/key" for GCS)
    size: int
    md5: str | None  # base64 digest, as GCS's md5Hash
    crc32c: str | None  # base64 big-endian, as GCS's crc32c
    generation: str | None = None  # GCS object generation (None for local files)


@dataclass(frozen=True)
class Source:
    """A parsed checkpoint source."""

    kind: str  # "base" | "gcs" | "local"
    root: str  # "bucket/prefix" for gcs, an absolute path for local

    @property
    def url(self) -> str:
        return f"gs://{self.root}" if self.kind == "gcs" else self.root


@dataclass
class FetchStats:
    downloaded: int = 0
    reused: int = 0
    retried: int = 0
    bytes_downloaded: int = 0


@dataclass
class _Selection:
    step: int | None
    step_dir: str  # name of the step folder (its local name under out_dir)
    objects: list[RemoteObject]
    available_steps: list[int] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)
    root_is_step: bool = False


# --- sources and filesystems -------------------------------------------------------------------


def parse_source(source: str) -> Source:
    """``base``, ``gs://bucket/.../actor``, ``file:///abs/path`` or a local path."""
    if source == BASE_SOURCE:
        return Source("base", "")
    if source.startswith("gs://"):
        root = source.removeprefix("gs://").strip("/")
        if not root:
            raise CheckpointNotFoundError(f"{source!r}: no bucket given; use gs://BUCKET/path")
        return Source("gcs", root)
    if source.startswith("file://"):
        return Source("local", str(Path(urlparse(source).path).resolve()))
    if "://" in source:
        raise CheckpointNotFoundError(
            f"unsupported checkpoint source {source!r}: use base, gs://, file:// or a local path"
        )
    return Source("local", str(Path(source).expanduser().resolve()))


def _gcs_filesystem() -> Any:
    """gcsfs filesystem: anonymous for an emulator, else application default credentials."""
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before importing
    import gcsfs

    token = "anon" if os.environ.get("STORAGE_EMULATOR_HOST") else "google_default"
    try:
        return gcsfs.GCSFileSystem(
            token=token, version_aware=True, skip_instance_cache=True, use_listings_cache=False
        )
    except Exception as exc:  # google.auth raises several types when no ADC is found
        raise CheckpointAccessError(
            f"no usable Google Cloud credentials ({type(exc).__name__}: {exc}): run `gcloud auth "
            "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a key file"
        ) from exc


def _filesystem(src: Source) -> Any:
    if src.kind == "gcs":
        return _gcs_filesystem()
    import fsspec

    return fsspec.filesystem("file")


def _http_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, OSError) and str(exc).startswith("Forbidden"):
        return 403
    return None


def _translate(exc: Exception, src: Source, what: str) -> CheckpointError:
    """Map gcsfs/OS errors to one-line checkpoint errors."""
    code = _http_code(exc)
    if code in (401, 403):
        return CheckpointAccessError(
            f"access denied (HTTP {code}) while {what} {src.url}: check the path, then run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a "
            "key with storage.objects.list/get on the bucket"
        )
    if isinstance(exc, FileNotFoundError):
        bucket = src.root.split("/", 1)[0]
        hint = f"bucket gs://{bucket} does not exist" if src.kind == "gcs" else "no such path"
        return CheckpointNotFoundError(
            f"{what} {src.url}: {hint}; fix the checkpoint source in the config"
        )
    return CheckpointError(f"{what} {src.url} failed: {type(exc).__name__}: {exc}")


# --- digests -----------------------------------------------------------------------------------


def file_digests(path: Path) -> tuple[str, str]:
    """(md5, crc32c) of a local file, base64-encoded like GCS's object metadata."""
    md5 = hashlib.md5(usedforsecurity=False)
    crc = google_crc32c.Checksum()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            crc.update(chunk)
    return base64.b64encode(md5.digest()).decode(), base64.b64encode(crc.digest()).decode()


def _mismatch(path: Path, obj: RemoteObject) -> str | None:
    """Why ``path`` is not a verified copy of ``obj`` (None if it is)."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != obj.size:
        return f"size {size} != {obj.size}"
    md5, crc = file_digests(path)
    if obj.md5 is not None and md5 != obj.md5:
        return f"md5 {md5} != {obj.md5}"
    if obj.crc32c is not None and crc != obj.crc32c:
        return f"crc32c {crc} != {obj.crc32c}"
    if obj.md5 is None and obj.crc32c is None:
        return "source lists no checksum"
    return None


# --- listing and step selection ----------------------------------------------------------------


def _list_objects(fs: Any, src: Source) -> list[RemoteObject]:
    """Every file under the source root, with size, checksums and generation."""
    try:
        found = fs.find(src.root, detail=True)
    except Exception as exc:
        raise _translate(exc, src, "listing") from exc
    if not found:
        raise CheckpointNotFoundError(
            f"no objects under {src.url}: check the checkpoint source path in the config"
        )
    return [_remote_object(src, path, info) for path, info in sorted(found.items())]


def _remote_object(src: Source, path: str, info: dict[str, Any]) -> RemoteObject:
    name = path[len(src.root):].lstrip("/")
    if src.kind == "gcs":
        generation = info.get("generation")
        return RemoteObject(name, path, int(info["size"]), info.get("md5Hash"),
                            info.get("crc32c"), str(generation) if generation else None)
    md5, crc = file_digests(Path(path))
    return RemoteObject(name, path, int(info["size"]), md5, crc)


def _usable(objects: list[RemoteObject], prefix: str) -> bool:
    names = {o.name for o in objects}
    return f"{prefix}{STEP_METADATA}" in names and f"{prefix}{PARAMS_DIR}/_METADATA" in names


def _wanted(obj: RemoteObject, prefix: str) -> bool:
    rest = obj.name[len(prefix):]
    return obj.name.startswith(prefix) and rest.split("/", 1)[0] not in SKIPPED_ITEMS


def select_step(objects: list[RemoteObject], src: Source, step: int | None) -> _Selection:
    """Pick the requested or latest complete step; keep only what evaluation needs."""
    if any(o.name.startswith(f"{PARAMS_DIR}/") for o in objects):  # root is a step folder
        return _select_step_root(objects, src, step)
    steps = sorted({int(n) for n in (o.name.split("/", 1)[0] for o in objects) if n.isdigit()})
    if not steps:
        raise CheckpointNotFoundError(
            f"no step folders (integers) under {src.url}: point the source at <run>/actor"
        )
    usable = [s for s in steps if _usable(objects, f"{s}/")]
    if step is None:
        if not usable:
            raise CheckpointNotFoundError(
                f"no complete step under {src.url} (steps {steps} lack {STEP_METADATA} or "
                f"{PARAMS_DIR}/_METADATA): wait for the trainer or pick another run"
            )
        step = usable[-1]
    elif step not in usable:
        state = "is incomplete" if step in steps else "does not exist"
        raise CheckpointNotFoundError(
            f"step {step} under {src.url} {state}; complete steps: {usable}: fix `step` in "
            "the config"
        )
    prefix = f"{step}/"
    wanted = [o for o in objects if _wanted(o, prefix)]
    skipped = [s for s in steps if s not in usable]
    return _Selection(step, str(step), wanted, steps, skipped)


def _select_step_root(objects: list[RemoteObject], src: Source, step: int | None) -> _Selection:
    base = src.root.rstrip("/").rsplit("/", 1)[-1]
    found_step = int(base) if base.isdigit() else None
    if step is not None and step != found_step:
        raise CheckpointNotFoundError(
            f"{src.url} is a single step folder ({base}) but step {step} was requested: drop "
            "`step` or point the source at <run>/actor"
        )
    if not _usable(objects, ""):
        raise CheckpointNotFoundError(
            f"{src.url} lacks {STEP_METADATA} or {PARAMS_DIR}/_METADATA: not a complete step"
        )
    wanted = [
        RemoteObject(f"{base}/{o.name}", o.path, o.size, o.md5, o.crc32c, o.generation)
        for o in objects
        if _wanted(o, "")
    ]
    steps = [found_step] if found_step is not None else []
    return _Selection(found_step, base, wanted, steps, root_is_step=True)


# --- download ----------------------------------------------------------------------------------


def staging_dir(out_dir: Path) -> Path:
    """Where verified partial downloads are kept between runs (next to ``out_dir``)."""
    return out_dir.with_name(f".{out_dir.name}.partial")


def _prepare_staging(out_dir: Path, staging: Path) -> None:
    """Reuse a previous complete output as the staging dir (its files are re-verified)."""
    if out_dir.exists():
        if staging.exists():
            shutil.rmtree(out_dir)
        else:
            out_dir.rename(staging)
    staging.mkdir(parents=True, exist_ok=True)


class _BarCallback(Callback):
    """fsspec callback that forwards byte progress of one download to a shared tqdm bar."""

    def __init__(self, bar: tqdm):
        super().__init__()
        self.bar = bar
        self.reported = 0

    def call(self, *args: Any, **kwargs: Any) -> None:
        if self.value > self.reported:
            self.bar.update(self.value - self.reported)
            self.reported = self.value


def _download_object(fs: Any, obj: RemoteObject, dest: Path, callback: Any) -> None:
    """Download one object (pinned to its listed generation) into ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remote = f"{obj.path}#{obj.generation}" if obj.generation else obj.path
    fs.get_file(remote, str(dest), callback=callback)


def _fetch_one(fs: Any, obj: RemoteObject, staging: Path, bar: tqdm, stats: FetchStats,
               src: Source) -> None:
    """Make ``staging/obj.name`` a verified copy of ``obj``, downloading only if needed."""
    final = staging / obj.name
    problem = _mismatch(final, obj)
    if problem is None:
        stats.reused += 1
        bar.update(obj.size)
        return
    if problem != "missing":
        log.warning("refetching %s (staged copy: %s)", obj.name, problem)
    part = final.with_name(final.name + ".part")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        callback = _BarCallback(bar)
        try:
            _download_object(fs, obj, part, callback)
        except FileNotFoundError as exc:
            raise CheckpointIntegrityError(
                f"{src.url}/{obj.name} (generation {obj.generation}) changed or vanished on the "
                "server after listing: rerun the fetch once the trainer has finished writing"
            ) from exc
        except Exception as exc:
            raise _translate(exc, src, f"downloading {obj.name} from") from exc
        bar.update(max(obj.size - callback.reported, 0))
        stats.bytes_downloaded += part.stat().st_size
        problem = _mismatch(part, obj)
        if problem is None:
            os.replace(part, final)
            stats.downloaded += 1
            return
        log.warning("%s failed verification (%s), attempt %d/%d", obj.name, problem, attempt,
                    MAX_ATTEMPTS)
        stats.retried += 1
    part.unlink(missing_ok=True)
    raise CheckpointIntegrityError(
        f"{src.url}/{obj.name} failed verification {MAX_ATTEMPTS} times ({problem}): the "
        "object or its metadata is corrupt; re-upload it or pick another step"
    )


def _prune(staging: Path, keep: set[str]) -> None:
    """Delete staged files that are not part of this checkpoint (old steps, ``*.part``)."""
    for path in sorted(staging.rglob("*"), reverse=True):
        rel = path.relative_to(staging).as_posix()
        if path.is_file() and rel not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _step_metadata(staging: Path, selection: _Selection) -> dict[str, Any] | None:
    path = staging / selection.step_dir / STEP_METADATA
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _manifest(src: Source, source: str, selection: _Selection, stats: FetchStats,
              staging: Path) -> dict[str, Any]:
    meta = _step_metadata(staging, selection) or {}
    objects = [
        {"name": o.name, "size": o.size, "generation": o.generation, "md5Hash": o.md5,
         "crc32c": o.crc32c}
        for o in selection.objects
    ]
    step_url = src.url.rstrip("/")
    if not selection.root_is_step:
        step_url = f"{step_url}/{selection.step_dir}"
    return {
        "format": MANIFEST_FORMAT,
        "source": source,
        "kind": src.kind,
        "lora": True,
        "bucket_path": step_url if src.kind == "gcs" else None,
        "path": step_url,
        "step": selection.step,
        "checkpoint_dir": selection.step_dir,
        "available_steps": selection.available_steps,
        "incomplete_steps_skipped": selection.skipped_steps,
        "skipped_items": list(SKIPPED_ITEMS),
        "objects": objects,
        "total_bytes": sum(o.size for o in selection.objects),
        "custom_metadata": meta.get("custom_metadata"),
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fetch_stats": asdict(stats),
    }


def _fetch_base(out_dir: Path) -> Path:
    staging = staging_dir(out_dir)
    _prepare_staging(out_dir, staging)
    _prune(staging, set())
    _write_json(staging / MANIFEST_NAME, {
        "format": MANIFEST_FORMAT, "source": BASE_SOURCE, "kind": "base", "lora": False,
        "step": None, "objects": [],
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    os.replace(staging, out_dir)
    return out_dir


def fetch_checkpoint(source: str, out_dir: Path, step: int | None = None) -> Path:
    """Fetch, verify and record one checkpoint step into ``out_dir``; returns ``out_dir``.

    ``source``: ``base`` (manifest only), ``gs://bucket/.../actor``, ``file://...`` or a path
    (``<run>/actor`` or one ``<step>`` folder). Picks ``step`` or the latest complete step,
    downloads everything in it except ``optimizer_state/``, verifies each object's size and
    md5/crc32c, and renames the staging dir to ``out_dir`` once all objects are verified. A rerun
    after an interruption re-verifies staged files and downloads only what is missing or bad.
    """
    out_dir = Path(out_dir)
    src = parse_source(source)
    if src.kind == "base":
        return _fetch_base(out_dir)
    fs = _filesystem(src)
    selection = select_step(_list_objects(fs, src), src, step)
    staging = staging_dir(out_dir)
    _prepare_staging(out_dir, staging)
    stats = FetchStats()
    total = sum(o.size for o in selection.objects)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetch step {selection.step}",
              mininterval=1.0) as bar:
        for obj in selection.objects:
            _fetch_one(fs, obj, staging, bar, stats, src)
    _prune(staging, {o.name for o in selection.objects})
    manifest = _manifest(src, source, selection, stats, staging)
    _write_json(staging / MANIFEST_NAME, manifest)
    os.replace(staging, out_dir)
    log.info("checkpoint %s step %s: %d downloaded, %d reused, %d retried -> %s", src.url,
             selection.step, stats.downloaded, stats.reused, stats.retried, out_dir)
    return out_dir


# --- restore -----------------------------------------------------------------------------------


def read_manifest(ckpt_dir: Path) -> dict[str, Any]:
    """The manifest written by :func:`fetch_checkpoint`."""
    path = Path(ckpt_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointNotFoundError(
            f"{path} missing: {ckpt_dir} is not a fetched checkpoint; run fetch-checkpoint first"
        ) from exc


def verify_checkpoint_dir(ckpt_dir: Path, manifest: dict[str, Any]) -> None:
    """Re-check every file listed in the manifest (size, md5, crc32c)."""
    for entry in manifest["objects"]:
        obj = RemoteObject(entry["name"], "", entry["size"], entry["md5Hash"], entry["crc32c"])
        problem = _mismatch(Path(ckpt_dir) / obj.name, obj)
        if problem is not None:
            raise CheckpointIntegrityError(
                f"{ckpt_dir}/{obj.name} no longer matches its manifest ({problem}): delete "
                f"{ckpt_dir} and fetch again"
            )


def _norm_path(path: tuple[Any, ...]) -> str:
    """'layers.0.attn.q_einsum.w_lora_a' for jax key paths of nnx state or orbax metadata."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    if parts and parts[-1] == "value":
        parts.pop()
    return ".".join(parts)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    import jax

    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {_norm_path(p): tuple(leaf.shape) for p, leaf in leaves}


def _warn_on_dtype_cast(target: Any, found_tree: Any) -> None:
    """orbax casts restored arrays to the model's dtype; say so when that happens."""
    import jax

    want = {_norm_path(p): str(x.dtype) for p, x in jax.tree_util.tree_leaves_with_path(target)}
    have = {_norm_path(p): str(x.dtype) for p, x in jax.tree_util.tree_leaves_with_path(found_tree)}
    casts = sorted({(have[k], want[k]) for k in want if k in have and have[k] != want[k]})
    for src_dtype, dst_dtype in casts:
        log.warning("LoRA params stored as %s are cast to the model's %s", src_dtype, dst_dtype)


def _mismatch_report(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                     lora: LoraConfig, params_dir: Path) -> str | None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if not (missing or unexpected or shapes):
        return None
    ranks = sorted({s[-1] for k, s in found.items() if k.endswith("_lora_a") and s})
    lines = [
        f"LoRA checkpoint {params_dir} does not match the model with rank={lora.rank}, "
        f"module_path={lora.module_path!r}: {len(shapes)} shape mismatches, {len(missing)} "
        f"expected but missing, {len(unexpected)} unexpected (checkpoint lora_a ranks: {ranks})."
    ]
    lines += [f"  shape {k}: expected {expected[k]}, found {found[k]}" for k in shapes[:20]]
    lines += [f"  missing {k}: expected {expected[k]}" for k in missing[:20]]
    lines += [f"  unexpected {k}: found {found[k]}" for k in unexpected[:20]]
    return "\n".join(lines)


def _lora_model(model: Any, lora: LoraConfig) -> Any:
    """Apply qwix LoRA as tunix.cli.utils.model.apply_lora_to_model does."""
    import qwix
    from flax import nnx

    provider = qwix.LoraProvider(module_path=lora.module_path, rank=lora.rank, alpha=lora.alpha)
    return qwix.apply_lora_to_model(model, provider, rngs=nnx.Rngs(0), **model.get_model_input())


def apply_checkpoint(model: Any, ckpt_dir: Path, lora: LoraConfig, verify: bool = True) -> Any:
    """Return ``model`` with the fetched LoRA checkpoint applied (``model`` itself for base).

    Applies qwix LoRA (rank/alpha/module_path from ``lora``) to the base tunix model, checks the
    checkpoint's LoRA tree and shapes against the model's (:class:`CheckpointMismatchError`
    lists the differences, up to 20 of each kind), then restores ``model_params`` with orbax onto
    the LoRA params (cast to the model's dtype). ``verify`` re-checks files against the manifest.
    """
    ckpt_dir = Path(ckpt_dir)
    manifest = read_manifest(ckpt_dir)
    if not manifest.get("lora", False):
        return model
    if verify:
        verify_checkpoint_dir(ckpt_dir, manifest)
    import orbax.checkpoint as ocp
    from flax import nnx

    params_dir = (ckpt_dir / manifest["checkpoint_dir"] / PARAMS_DIR).resolve()
    lora_model = _lora_model(model, lora)
    target = nnx.state(lora_model, nnx.LoRAParam)
    checkpointer = ocp.PyTreeCheckpointer()
    stored = checkpointer.metadata(params_dir).item_metadata.tree
    report = _mismatch_report(_shapes(target), _shapes(stored), lora, params_dir)
    if report:
        raise CheckpointMismatchError(report)
    _warn_on_dtype_cast(target, stored)
    restored = checkpointer.restore(
        params_dir,
        args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)
        ),
    )
    nnx.update(lora_model, restored)
    return lora_model
